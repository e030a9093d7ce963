// Callwright operator page. API data is only ever set through textContent, never parsed as markup.
"use strict";

const ENDED = new Set(["disconnected", "failed"]);
// Live updates come pushed over /api/v1/live (Server-Sent Events read through fetch, so the key travels
// as a header as on every other request). When the stream drops the page reconnects, waiting longer each
// time up to this; it never polls.
const RECONNECT_MAX_MS = 15000;
// A recording is fetched (with the key) into a blob only up to this size; larger ones offer a download.
const RECORDING_INLINE_MAX = 64 * 1024 * 1024;

// The API key lives in sessionStorage (this tab only, gone when it closes) and travels as an
// Authorization header on each fetch. A header credential, unlike a cookie, is never attached by the
// browser on its own, so another site cannot make this browser act for the operator: CSRF-safe by
// construction, with no CSRF token to manage. The key is never put in a URL or the page's markup.
const KEY_STORE = "callwright.apiKey";

const state = {
  selected: null,
  signedIn: false,
  lists: { active: [], recent: [] },
  filter: { q: "", state: "", mode: "", outcome: "" },
  // call id -> post-call record, or null once the server said it has none (404: not asked again)
  records: new Map(),
  recordTried: new Map(), // call id -> "live" | "ended": when the record was last asked for and missing
  audio: { callId: null, url: null },
  calling: null, // {id, party, mode}: the call this page just placed, for the status line
  live: null, // AbortController of the open stream
  liveDelay: 1000,
  detailSeq: 0,
  serverLeaving: false, // the stream's last event said the server is shutting down
};

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// Re-rendering only on change keeps keyboard focus on buttons and stops live regions re-announcing
// unchanged content on every poll.
const rendered = new Map();
function renderIfChanged(node, data, build) {
  const signature = JSON.stringify(data);
  if (rendered.get(node.id) === signature) return;
  rendered.set(node.id, signature);
  node.replaceChildren(...build());
}

function show(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}

function seconds(total) {
  if (typeof total !== "number" || !Number.isFinite(total) || total < 0) return "";
  const s = Math.round(total);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

function millis(ms) {
  return typeof ms === "number" && Number.isFinite(ms) ? `${Math.round(ms)} ms` : "";
}

function clock(epochSeconds) {
  if (typeof epochSeconds !== "number") return "";
  return new Date(epochSeconds * 1000).toLocaleTimeString();
}

// ACS raw ids carry a kind prefix ("4:" phone, "8:acs:" user); phones read better without it.
function party(call) {
  const who = call.direction === "outbound" ? call.target : call.caller;
  if (!who) return "";
  return who.startsWith("4:") ? who.slice(2) : who;
}

// FastAPI 422s list {loc, msg}; our own errors are {error, detail}.
function errorText(status, body) {
  if (body && Array.isArray(body.detail)) {
    return body.detail
      .map((d) => {
        const where = (d.loc || []).filter((p) => p !== "body").join(".");
        const msg = String(d.msg || "").replace(/^Value error, /, "");
        return where ? `${where}: ${msg}` : msg;
      })
      .join("; ");
  }
  if (body && typeof body.detail === "string") return body.detail;
  return `request failed (HTTP ${status})`;
}

function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORE) || "";
  } catch {
    return "";
  }
}

function authHeaders(accept) {
  const headers = { Accept: accept };
  const key = storedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

// A refused key (or a server with no operator access set up) sends the page back to the sign-in form.
function checkAuth(path, status, body) {
  const key = storedKey();
  const locked = body && body.error === "operator_auth_not_configured";
  if (path.startsWith("/api/") && (status === 401 || locked)) {
    // Without a key a 401 just means "sign in"; with one, say why the key was refused.
    signOut(locked || key ? errorText(status, body) : "", key !== "" && !locked);
  }
}

async function api(method, path, payload) {
  const init = { method, headers: authHeaders("application/json"), credentials: "omit" };
  if (payload !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(payload);
  }
  const resp = await fetch(path, init);
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  checkAuth(path, resp.status, body);
  return { ok: resp.ok, status: resp.status, body };
}

// ---- sign in ------------------------------------------------------------------------------

function clearData() {
  state.selected = null;
  state.lists = { active: [], recent: [] };
  state.records.clear();
  state.recordTried.clear();
  state.calling = null;
  rendered.clear();
  for (const id of ["active-calls", "recent-calls", "transcript", "events"]) $(id).replaceChildren();
  show($("form-status"), "");
  clearDetail();
}

function signOut(message, hadKey) {
  try {
    sessionStorage.removeItem(KEY_STORE);
  } catch {
    // storage unavailable: nothing was kept
  }
  state.signedIn = false;
  stopLive();
  clearData();
  $("main").hidden = true;
  $("signout").hidden = true;
  $("who").hidden = true;
  $("signin").hidden = false;
  show($("signin-error"), hadKey ? `That key was not accepted: ${message}` : message || "");
}

function signedIn() {
  state.signedIn = true;
  $("signin").hidden = true;
  $("main").hidden = false;
  const key = storedKey();
  $("who").textContent = key ? "Signed in with an API key" : "No key (loopback development mode)";
  $("who").hidden = false;
  $("signout").hidden = !key;
  startLive();
}

async function signIn(event) {
  event.preventDefault();
  const input = $("api-key");
  const key = input.value.trim();
  if (!key) {
    show($("signin-error"), "enter an API key");
    input.focus();
    return;
  }
  try {
    sessionStorage.setItem(KEY_STORE, key);
  } catch {
    show($("signin-error"), "this browser does not allow session storage; the page cannot keep the key");
    return;
  }
  input.value = "";
  const button = $("signin-button");
  button.disabled = true;
  try {
    const res = await api("GET", "/api/v1/calls");
    if (res.ok) {
      show($("signin-error"), "");
      applyLists(res.body);
      signedIn();
    } else if (res.status !== 401) {
      show($("signin-error"), errorText(res.status, res.body));
    }
  } catch (err) {
    show($("signin-error"), `could not reach the server (${err.message})`);
  } finally {
    button.disabled = false;
  }
}

// The first look: a stored key (a reload in the same tab), or none (the loopback development mode).
async function start() {
  refreshReady(); // once; afterwards the live stream reports readiness changes
  try {
    const res = await api("GET", "/api/v1/calls");
    if (res.ok) {
      applyLists(res.body);
      signedIn();
    } else if (res.status !== 401 && !(res.body && res.body.error === "operator_auth_not_configured")) {
      signOut(errorText(res.status, res.body), false);
    }
  } catch (err) {
    signOut(`could not reach the server (${err.message})`, false);
  }
}

// ---- place a call -------------------------------------------------------------------------

async function placeCall(event) {
  event.preventDefault();
  const formError = $("form-error");
  const formStatus = $("form-status");
  show(formError, "");
  show(formStatus, "");
  const target = $("target").value.trim();
  if (!target) {
    show(formError, "target: enter a phone number (E.164, e.g. +15557770001) or an ACS user id");
    $("target").setAttribute("aria-invalid", "true");
    $("target").focus();
    return;
  }
  let context = {};
  const contextText = $("context").value.trim();
  if (contextText) {
    try {
      context = JSON.parse(contextText);
    } catch (err) {
      show(formError, `context: not valid JSON (${err.message})`);
      $("context").setAttribute("aria-invalid", "true");
      $("context").focus();
      return;
    }
    if (context === null || typeof context !== "object" || Array.isArray(context)) {
      show(formError, "context: must be a JSON object, e.g. {\"customer_name\": \"Ada\"}");
      $("context").setAttribute("aria-invalid", "true");
      $("context").focus();
      return;
    }
  }
  $("target").removeAttribute("aria-invalid");
  $("context").removeAttribute("aria-invalid");
  const button = $("place");
  button.disabled = true;
  try {
    const res = await api("POST", "/api/v1/calls", { target, mode: $("mode").value, context });
    if (!res.ok) {
      show(formError, errorText(res.status, res.body));
      if (res.status === 422) $("target").setAttribute("aria-invalid", "true");
      return;
    }
    state.calling = { id: res.body.call_connection_id, party: party(res.body), mode: res.body.mode };
    updateCallingStatus(res.body);
    state.selected = res.body.call_connection_id;
    await refresh();
  } catch (err) {
    show(formError, `could not reach the server (${err.message})`);
  } finally {
    button.disabled = false;
  }
}

// The status line under the form follows the call it announced: "Calling…" only while it rings, then
// what became of it — never a "Calling…" left standing after the call was answered or ended.
function updateCallingStatus(call) {
  const calling = state.calling;
  if (!calling || !call || call.call_connection_id !== calling.id) return;
  const formStatus = $("form-status");
  const formError = $("form-error");
  if (call.state === "connected" || call.state === "transferring") {
    show(formStatus, `Connected to ${calling.party} (${calling.mode}).`);
  } else if (call.state === "failed") {
    state.calling = null;
    show(formStatus, "");
    show(formError, `The call to ${calling.party} failed${call.end_reason ? `: ${call.end_reason}` : "."}`);
  } else if (call.state === "disconnected") {
    state.calling = null;
    const answered = typeof call.connected_at === "number";
    show(formStatus, answered ? `The call to ${calling.party} ended.` : "");
    const why = call.end_reason ? `: ${call.end_reason}` : ".";
    if (!answered) show(formError, `The call to ${calling.party} was not answered${why}`);
  } else {
    show(formStatus, `Calling ${calling.party} (${calling.mode})…`);
  }
}

async function hangUp(callId) {
  const res = await api("DELETE", `/api/v1/calls/${encodeURIComponent(callId)}`);
  if (!res.ok) show($("calls-error"), `hang up failed: ${errorText(res.status, res.body)}`);
  await refresh();
}

// ---- call lists ---------------------------------------------------------------------------

function duration(call) {
  if (typeof call.duration_s === "number") return call.duration_s;
  if (typeof call.ended_at !== "number") return null; // still up: the detail view shows it live
  const from = typeof call.connected_at === "number" ? call.connected_at : call.created_at;
  return typeof from === "number" ? Math.max(0, call.ended_at - from) : null;
}

function outcome(call) {
  if (!ENDED.has(call.state)) return call.state === "transferring" ? "transferring" : "in progress";
  // Busy, declined, unanswered: never connected (end_reason says which), unlike a call that broke mid-way.
  if (typeof call.connected_at !== "number") return "not connected";
  // The server's post-call record: hung_up_by_caller, hung_up_by_agent, transferred, server_shutdown, ...
  if (call.outcome && call.outcome !== "in_progress") return String(call.outcome);
  if (call.state === "failed") return "failed";
  if (/transfer/i.test(call.end_reason || "")) return "transferred";
  return "completed";
}

function matches(call) {
  const f = state.filter;
  if (f.q) {
    const q = f.q.toLowerCase();
    const hay = [party(call), call.caller, call.target, call.call_connection_id].filter(Boolean).join(" ");
    if (!hay.toLowerCase().includes(q)) return false;
  }
  if (f.state === "live" && ENDED.has(call.state)) return false;
  if (f.state && f.state !== "live" && call.state !== f.state) return false;
  if (f.mode && call.mode !== f.mode) return false;
  if (f.outcome && outcome(call) !== f.outcome) return false;
  return true;
}

function cell(label, props, ...children) {
  return el("td", { ...(props || {}), "data-label": label }, ...children);
}

function callRow(call, active) {
  const id = call.call_connection_id;
  const selected = id === state.selected;
  const select = el("button", {
    type: "button",
    class: "link",
    "aria-pressed": String(selected),
    "aria-label": `Show call ${party(call) || id}`,
    onclick: () => selectCall(id),
    text: party(call) || id,
  });
  const actions = el("td", { class: "row-actions" });
  if (active && !ENDED.has(call.state)) {
    actions.append(
      el("button", {
        type: "button",
        class: "danger small",
        "aria-label": `Hang up call ${party(call) || id}`,
        onclick: () => hangUp(id),
        text: "Hang up",
      }),
    );
  }
  const took = duration(call);
  return el(
    "tr",
    { class: selected ? "selected" : "", "data-call-id": id },
    cell("State", {}, el("span", { class: `state state-${call.state}`, text: call.state })),
    cell("Mode", { class: "mode", text: call.mode }),
    cell("Party", { class: "party" }, select, el("span", { class: "direction", text: call.direction })),
    cell("Started", { text: clock(call.created_at) }),
    cell("Duration", { class: "duration", text: took === null ? "—" : seconds(took) }),
    cell("Outcome", { class: "outcome", text: outcome(call) }),
    actions,
  );
}

function renderList(tbodyId, emptyId, calls, active) {
  const shown = calls.filter(matches);
  renderIfChanged($(tbodyId), [state.selected, shown], () => shown.map((c) => callRow(c, active)));
  const empty = $(emptyId);
  empty.hidden = shown.length > 0;
  if (!empty.hidden) {
    const what = active ? "active" : "recent";
    empty.textContent = calls.length ? `No ${what} calls match the filter.` : `No ${what} calls.`;
  }
  return calls.length - shown.length;
}

function renderLists() {
  const hidden =
    renderList("active-calls", "active-empty", state.lists.active, true) +
    renderList("recent-calls", "recent-empty", state.lists.recent, false);
  show($("filter-note"), hidden ? `${hidden} call${hidden === 1 ? "" : "s"} hidden by the filter` : "");
}

function applyLists(body) {
  state.lists = { active: (body && body.active) || [], recent: (body && body.recent) || [] };
  renderLists();
  if (state.calling) {
    const id = state.calling.id;
    const call = [...state.lists.active, ...state.lists.recent].find((c) => c.call_connection_id === id);
    if (call) updateCallingStatus(call);
  }
}

function readFilters() {
  state.filter = {
    q: $("f-q").value.trim(),
    state: $("f-state").value,
    mode: $("f-mode").value,
    outcome: $("f-outcome").value,
  };
  renderLists();
}

// ---- selected call ------------------------------------------------------------------------

function selectCall(id) {
  state.selected = id;
  renderLists();
  loadDetail();
}

function speaker(entry) {
  if (entry.role === "user") return entry.kind === "dtmf" ? "Caller (keypad)" : "Caller";
  if (entry.role === "assistant") return entry.agent ? `Agent (${entry.agent})` : "Agent";
  if (entry.role === "tool") return entry.name ? `Tool ${entry.name}` : "Tool";
  return entry.role || "?";
}

// An interrupted reply keeps only what the caller heard; a reply cut before its first word has nothing,
// and says so instead of showing an empty bubble.
function spoken(text, cut) {
  const content = String(text || "").trim();
  if (content) return el("span", { class: "content", text: content });
  return el("span", { class: "content none", text: cut ? "(cut off before any of it was heard)" : "(nothing)" });
}

function transcriptLine(entry) {
  const cut = Boolean(entry.interrupted);
  const classes = ["line", `role-${entry.role}`];
  if (cut) classes.push("cut");
  const heard = String(entry.content || "").trim();
  return el(
    "li",
    { class: classes.join(" ") },
    el("span", { class: "speaker", text: `${speaker(entry)}: ` }),
    spoken(entry.content, cut),
    cut && heard ? el("span", { class: "cut-mark", text: " (cut off)" }) : null,
  );
}

function short(value, limit) {
  let text;
  if (typeof value === "string") text = value;
  else {
    try {
      text = JSON.stringify(value);
    } catch {
      text = String(value);
    }
  }
  if (text === undefined) text = "";
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

function toolLine(tool) {
  const args = tool.arguments === undefined ? "" : short(tool.arguments, 200);
  return el(
    "li",
    { class: "line role-tool tool-call" },
    el("span", { class: "speaker", text: "Tool: " }),
    el("code", { class: "tool-name", text: `${tool.name || "?"}(${args})` }),
    el("span", { class: "tool-result", text: ` → ${short(tool.result, 300)}` }),
  );
}

function handoffText(handoff) {
  if (!handoff) return "";
  if (typeof handoff === "string") return handoff;
  const to = handoff.to || handoff.agent || handoff.target || "";
  const from = handoff.from ? `${handoff.from} → ` : "";
  return `${from}${to}`.trim() || short(handoff, 120);
}

// One turn of the post-call record: what the caller said, the tools the agent used, a handoff, and the
// reply with how long the caller waited for it (response_ms) and whether they talked over it.
function turnLines(turn) {
  const lines = [];
  if (turn.user) {
    lines.push(
      el(
        "li",
        { class: "line role-user" },
        el("span", { class: "speaker", text: "Caller: " }),
        el("span", { class: "content", text: String(turn.user) }),
      ),
    );
  }
  for (const tool of turn.tool_calls || []) lines.push(toolLine(tool));
  if (turn.handoff) {
    lines.push(el("li", { class: "line handoff", text: `Handed off: ${handoffText(turn.handoff)}` }));
  }
  const cut = Boolean(turn.interrupted);
  const agentText = String(turn.agent || "").trim();
  if (agentText || cut || typeof turn.response_ms === "number") {
    const meta = el("span", { class: "meta" });
    if (typeof turn.response_ms === "number") {
      meta.append(
        el("span", {
          class: "latency",
          title: "from the end of the caller's speech to the reply's first audio",
          text: `reply in ${millis(turn.response_ms)}`,
        }),
      );
    }
    if (cut) meta.append(el("span", { class: "barge", text: "barge-in" }));
    lines.push(
      el(
        "li",
        { class: `line role-assistant${cut ? " cut" : ""}` },
        el("span", { class: "speaker", text: turn.agent_name ? `Agent (${turn.agent_name}): ` : "Agent: " }),
        spoken(turn.agent, cut),
        cut && agentText ? el("span", { class: "cut-mark", text: " (cut off)" }) : null,
        meta.childNodes.length ? meta : null,
      ),
    );
  }
  return lines;
}

function count(value) {
  if (Array.isArray(value)) return value.length;
  return typeof value === "number" ? value : 0;
}

function latencySummary(record) {
  const ms = (record && record.turns ? record.turns : [])
    .map((t) => t.response_ms)
    .filter((v) => typeof v === "number" && Number.isFinite(v))
    .sort((a, b) => a - b);
  if (!ms.length) return record ? "no replies measured" : "not available (no post-call record yet)";
  const median = ms[Math.floor((ms.length - 1) / 2)];
  const replies = ms.length === 1 ? "1 reply" : `${ms.length} replies`;
  return `median ${millis(median)}, worst ${millis(ms[ms.length - 1])} over ${replies}`;
}

function renderDetail(call, record) {
  $("detail-empty").hidden = true;
  $("detail-body").hidden = false;
  $("d-id").textContent = call.call_connection_id;
  const st = $("d-state");
  st.replaceChildren(el("span", { class: `state state-${call.state}`, text: call.state }));
  if (call.end_reason) st.append(el("span", { class: "muted", text: ` (${call.end_reason})` }));
  $("d-mode").textContent = call.mode;
  $("d-direction").textContent = `${call.direction} — ${party(call)}`;
  $("d-participants").textContent = (call.participants || []).join(", ") || "—";
  const took = record && typeof record.duration_s === "number" ? record.duration_s : duration(call);
  $("d-duration").textContent = took === null ? "in progress" : seconds(took);
  $("d-outcome").textContent = (record && record.outcome) || outcome(call);
  $("d-latency").textContent = latencySummary(record);
  $("d-barge").textContent = record ? String(count(record.barge_ins)) : "—";
  const hang = $("d-hangup");
  hang.hidden = ENDED.has(call.state);
  hang.onclick = () => hangUp(call.call_connection_id);
  // While the call is up the live transcript is the freshest account; once it ended, the record's turns
  // carry more (latency, tools, handoffs).
  const ended = ENDED.has(call.state);
  const turns = ended && record && Array.isArray(record.turns) && record.turns.length ? record.turns : null;
  const transcript = call.transcript || [];
  renderIfChanged($("transcript"), [call.call_connection_id, turns, transcript], () =>
    turns ? turns.flatMap(turnLines) : transcript.map(transcriptLine),
  );
  $("transcript-empty").hidden = Boolean(turns) || transcript.length > 0;
  const events = call.events_seen || [];
  renderIfChanged($("events"), [call.call_connection_id, events], () => events.map((e) => el("li", { text: e })));
  renderRecording(call.call_connection_id, record);
}

function clearDetail() {
  $("detail-empty").hidden = false;
  $("detail-body").hidden = true;
  dropAudio();
}

function dropAudio() {
  const audio = $("d-audio");
  if (state.audio.url) {
    audio.removeAttribute("src");
    audio.load();
    URL.revokeObjectURL(state.audio.url);
  }
  state.audio = { callId: null, url: null };
  $("d-recording").hidden = true;
}

// The recording needs the operator key, which an <audio src> cannot send: it is fetched with the header
// into a blob and played from there (the page's CSP allows blob: media for exactly this).
async function renderRecording(callId, record) {
  const rec = record && record.recording;
  if (!rec || !rec.available || !rec.url) {
    if (state.audio.callId !== callId || state.audio.url) dropAudio();
    return;
  }
  if (state.audio.callId === callId) return; // already loaded (or loading) for this call
  dropAudio();
  state.audio = { callId, url: null };
  const box = $("d-recording");
  const note = $("d-recording-note");
  box.hidden = false;
  const length = typeof rec.seconds === "number" ? `${seconds(rec.seconds)}, ` : "";
  note.textContent = `${length}stereo: the caller and the agent on separate channels`;
  try {
    const resp = await fetch(rec.url, { headers: authHeaders("audio/wav"), credentials: "omit" });
    if (!resp.ok) {
      checkAuth(rec.url, resp.status, null);
      note.textContent = `the recording could not be loaded (HTTP ${resp.status})`;
      return;
    }
    const size = Number(resp.headers.get("content-length") || 0);
    if (size > RECORDING_INLINE_MAX) {
      note.textContent = `the recording is ${Math.round(size / 1048576)} MB: too large to play here`;
      return;
    }
    const blob = await resp.blob();
    if (state.audio.callId !== callId) return; // another call was selected meanwhile
    state.audio.url = URL.createObjectURL(blob);
    $("d-audio").src = state.audio.url;
  } catch (err) {
    if (state.audio.callId === callId) note.textContent = `the recording could not be loaded (${err.message})`;
  }
}

// The post-call record (latencies, barge-ins, tools, handoffs, recording) of a call. A server without it
// answers 404: asked once while the call is up and once after it ended, then the page does without.
async function loadRecord(call) {
  const id = call.call_connection_id;
  if (state.records.has(id)) {
    const known = state.records.get(id);
    if (known !== null || !ENDED.has(call.state) || state.recordTried.get(id) === "ended") return known;
  } else if (state.recordTried.get(id) === "live" && !ENDED.has(call.state)) {
    return null;
  }
  const res = await api("GET", `/api/v1/calls/${encodeURIComponent(id)}/record`);
  if (res.ok && res.body && typeof res.body === "object") {
    // A live call's record grows: keep it only once the call has ended.
    if (ENDED.has(call.state)) state.records.set(id, res.body);
    return res.body;
  }
  if (res.status === 404) {
    state.recordTried.set(id, ENDED.has(call.state) ? "ended" : "live");
    if (ENDED.has(call.state)) state.records.set(id, null);
  }
  return null;
}

async function loadDetail() {
  const id = state.selected;
  if (!state.signedIn || !id) {
    clearDetail();
    return;
  }
  const seq = ++state.detailSeq;
  try {
    const detail = await api("GET", `/api/v1/calls/${encodeURIComponent(id)}`);
    if (seq !== state.detailSeq || !state.signedIn) return; // a newer load (or a sign-out) overtook this one
    if (!detail.ok) {
      clearDetail();
      return;
    }
    const record = await loadRecord(detail.body);
    if (seq !== state.detailSeq || !state.signedIn) return;
    renderDetail(detail.body, record);
    updateCallingStatus(detail.body);
  } catch (err) {
    show($("calls-error"), `could not load the call: ${err.message}`);
  }
}

// One read of the lists and the selected call: at sign-in and after the page's own actions. Everything
// else arrives over the live stream.
async function refresh() {
  if (!state.signedIn) return;
  const callsError = $("calls-error");
  try {
    const list = await api("GET", "/api/v1/calls");
    if (!state.signedIn) return; // the key was refused meanwhile: show nothing
    if (!list.ok) throw new Error(errorText(list.status, list.body));
    show(callsError, "");
    applyLists(list.body);
    await loadDetail();
  } catch (err) {
    show(callsError, `could not load calls: ${err.message}`);
  }
}

// ---- readiness and the live stream --------------------------------------------------------

function showReady(info) {
  const badge = $("ready");
  const ready = Boolean(info && info.ready);
  badge.textContent = ready ? "Ready" : "Not ready";
  badge.className = `badge ${ready ? "badge-ok" : "badge-bad"}`;
  if (info) {
    const draining = info.draining ? "; draining" : "";
    const store = `store reachable: ${Boolean(info.store_reachable)}`;
    badge.title = `${store}; ACS configured: ${Boolean(info.acs_configured)}${draining}`;
  }
}

async function refreshReady() {
  try {
    const res = await api("GET", "/ready");
    const checks = (res.body && res.body.checks) || {};
    showReady({
      ready: Boolean(res.body && res.body.ready),
      store_reachable: Boolean((checks.store || {}).reachable),
      acs_configured: Boolean((checks.automation_client || {}).configured),
      draining: Boolean(checks.draining),
    });
  } catch {
    const badge = $("ready");
    badge.textContent = "Server unreachable";
    badge.className = "badge badge-bad";
  }
}

function setLive(on, text) {
  const badge = $("live");
  badge.hidden = !state.signedIn;
  badge.textContent = text || (on ? "Live" : "Reconnecting…");
  badge.className = `badge ${on ? "badge-ok" : "badge-unknown"}`;
  badge.dataset.live = on ? "on" : "off";
}

function onLiveEvent(name, data) {
  if (name === "calls") {
    applyLists(data);
    const changed = data.changed;
    if (state.selected && (changed === null || changed === undefined || changed.includes(state.selected))) {
      loadDetail();
    }
  } else if (name === "ready") {
    showReady(data);
  } else if (name === "bye") {
    state.serverLeaving = !data.reconnect;
  }
}

function parseBlock(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return;
  try {
    onLiveEvent(name, JSON.parse(data.join("\n")));
  } catch (err) {
    console.warn(`live update ${name} ignored: ${err.message}`);
  }
}

function stopLive() {
  if (state.live) state.live.abort();
  state.live = null;
  clearTimeout(state.liveTimer);
  $("live").hidden = true;
}

async function startLive() {
  if (state.live || !state.signedIn) return;
  clearTimeout(state.liveTimer);
  const ctrl = new AbortController();
  state.live = ctrl;
  let heard = false;
  try {
    const resp = await fetch("/api/v1/live", {
      headers: authHeaders("text/event-stream"),
      credentials: "omit",
      cache: "no-store",
      signal: ctrl.signal,
    });
    if (!resp.ok || !resp.body) {
      let body = null;
      try {
        body = await resp.json();
      } catch {
        body = null;
      }
      checkAuth("/api/v1/live", resp.status, body);
      throw new Error(errorText(resp.status, body));
    }
    setLive(true);
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      heard = true;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        parseBlock(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (err) {
    if (ctrl.signal.aborted) return;
    console.warn(`live updates interrupted: ${err.message}`);
  } finally {
    if (state.live === ctrl) state.live = null;
  }
  if (!state.signedIn || ctrl.signal.aborted) return;
  // A stream that delivered something reconnects at once (it ended on purpose: its time was up, or the
  // server restarts); one that failed waits longer each time.
  // A server that said it is stopping gets a few seconds to come back before the first attempt.
  const leaving = state.serverLeaving;
  state.serverLeaving = false;
  state.liveDelay = heard && !leaving ? 1000 : Math.min(state.liveDelay * 2, RECONNECT_MAX_MS);
  setLive(false);
  if (!heard) refreshReady();
  state.liveTimer = setTimeout(
    () => startLive(), // whatever changed while the stream was down comes in the next stream's first event
    leaving ? 3000 : heard ? 250 : state.liveDelay,
  );
}

document.addEventListener("DOMContentLoaded", () => {
  $("place-form").addEventListener("submit", placeCall);
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signOut(undefined, false));
  $("filters").addEventListener("input", readFilters);
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  start();
});
