// Callwright operator page. API data is only ever set through textContent, never parsed as markup.
"use strict";

const POLL_MS = 1000;
const READY_EVERY = 5; // polls between readiness checks
const ENDED = new Set(["disconnected", "failed"]);

// The API key lives in sessionStorage (this tab only, gone when it closes) and travels as an
// Authorization header on each fetch. A header credential, unlike a cookie, is never attached by the
// browser on its own, so another site cannot make this browser act for the operator: CSRF-safe by
// construction, with no CSRF token to manage. The key is never put in a URL or the page's markup.
const KEY_STORE = "callwright.apiKey";

const state = { selected: null, polls: 0, busy: false, signedIn: false };

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

async function api(method, path, payload) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "omit" };
  const key = storedKey();
  if (key) init.headers.Authorization = `Bearer ${key}`;
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
  // No or a refused credential, or a server with no operator access set up: back to the sign-in form.
  const locked = body && body.error === "operator_auth_not_configured";
  if (path.startsWith("/api/") && (resp.status === 401 || locked)) {
    // Without a key a 401 just means "sign in"; with one, say why the key was refused.
    signOut(locked || key ? errorText(resp.status, body) : "", key !== "" && !locked);
  }
  return { ok: resp.ok, status: resp.status, body };
}

// ---- sign in ------------------------------------------------------------------------------

function clearData() {
  state.selected = null;
  rendered.clear();
  for (const id of ["active-calls", "recent-calls", "transcript", "events"]) $(id).replaceChildren();
  clearDetail();
}

function signOut(message, hadKey) {
  try {
    sessionStorage.removeItem(KEY_STORE);
  } catch {
    // storage unavailable: nothing was kept
  }
  state.signedIn = false;
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
      signedIn();
      await refresh();
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
  try {
    const res = await api("GET", "/api/v1/calls");
    if (res.ok) {
      signedIn();
      await refresh();
    } else if (res.status !== 401 && !(res.body && res.body.error === "operator_auth_not_configured")) {
      signOut(errorText(res.status, res.body), false);
    }
  } catch (err) {
    signOut(`could not reach the server (${err.message})`, false);
  }
  tick();
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
    show(formStatus, `Calling ${party(res.body)} (${res.body.mode})…`);
    state.selected = res.body.call_connection_id;
    await refresh();
  } catch (err) {
    show(formError, `could not reach the server (${err.message})`);
  } finally {
    button.disabled = false;
  }
}

async function hangUp(callId) {
  const res = await api("DELETE", `/api/v1/calls/${encodeURIComponent(callId)}`);
  if (!res.ok) show($("calls-error"), `hang up failed: ${errorText(res.status, res.body)}`);
  await refresh();
}

// ---- call lists ---------------------------------------------------------------------------

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
  return el(
    "tr",
    { class: selected ? "selected" : "", "data-call-id": id },
    el("td", {}, el("span", { class: `state state-${call.state}`, text: call.state })),
    el("td", { text: call.direction }),
    el("td", { class: "mode", text: call.mode }),
    el("td", {}, select),
    el("td", { text: clock(call.created_at) }),
    actions,
  );
}

function renderList(tbodyId, emptyId, calls, active) {
  renderIfChanged($(tbodyId), [state.selected, calls], () => calls.map((c) => callRow(c, active)));
  $(emptyId).hidden = calls.length > 0;
}

// ---- selected call ------------------------------------------------------------------------

function selectCall(id) {
  state.selected = id;
  refresh();
}

function speaker(entry) {
  if (entry.role === "user") return "Caller";
  if (entry.role === "assistant") return entry.agent ? `Agent (${entry.agent})` : "Agent";
  if (entry.role === "tool") return "Tool";
  return entry.role || "?";
}

function transcriptLine(entry) {
  const cut = Boolean(entry.interrupted);
  const classes = ["line", `role-${entry.role}`];
  if (cut) classes.push("cut");
  return el(
    "li",
    { class: classes.join(" ") },
    el("span", { class: "speaker", text: `${speaker(entry)}: ` }),
    el("span", { class: "content", text: entry.content || "" }),
    cut ? el("span", { class: "cut-mark", text: " (cut off)" }) : null,
  );
}

function renderDetail(call) {
  $("detail-empty").hidden = true;
  $("detail-body").hidden = false;
  $("d-id").textContent = call.call_connection_id;
  const st = $("d-state");
  st.replaceChildren(el("span", { class: `state state-${call.state}`, text: call.state }));
  if (call.end_reason) st.append(el("span", { class: "muted", text: ` (${call.end_reason})` }));
  $("d-mode").textContent = call.mode;
  $("d-direction").textContent = `${call.direction} — ${party(call)}`;
  $("d-participants").textContent = (call.participants || []).join(", ") || "—";
  const hang = $("d-hangup");
  hang.hidden = ENDED.has(call.state);
  hang.onclick = () => hangUp(call.call_connection_id);
  const transcript = call.transcript || [];
  renderIfChanged($("transcript"), [call.call_connection_id, transcript], () => transcript.map(transcriptLine));
  $("transcript-empty").hidden = transcript.length > 0;
  const events = call.events_seen || [];
  renderIfChanged($("events"), [call.call_connection_id, events], () => events.map((e) => el("li", { text: e })));
}

function clearDetail() {
  $("detail-empty").hidden = false;
  $("detail-body").hidden = true;
}

// ---- polling ------------------------------------------------------------------------------

async function refreshReady() {
  const badge = $("ready");
  try {
    const res = await api("GET", "/ready");
    const ready = Boolean(res.body && res.body.ready);
    badge.textContent = ready ? "Ready" : "Not ready";
    badge.className = `badge ${ready ? "badge-ok" : "badge-bad"}`;
    if (res.body && res.body.checks) {
      const checks = res.body.checks;
      const store = checks.store || {};
      const automation = checks.automation_client || {};
      badge.title = `store reachable: ${Boolean(store.reachable)}; ACS configured: ${Boolean(automation.configured)}`;
    }
  } catch {
    badge.textContent = "Server unreachable";
    badge.className = "badge badge-bad";
  }
}

async function refresh() {
  if (!state.signedIn) return;
  const callsError = $("calls-error");
  try {
    const list = await api("GET", "/api/v1/calls");
    if (!state.signedIn) return; // the key was refused meanwhile: show nothing
    if (!list.ok) throw new Error(errorText(list.status, list.body));
    show(callsError, "");
    renderList("active-calls", "active-empty", list.body.active || [], true);
    renderList("recent-calls", "recent-empty", list.body.recent || [], false);
    if (state.selected) {
      const detail = await api("GET", `/api/v1/calls/${encodeURIComponent(state.selected)}`);
      if (detail.ok && state.signedIn) renderDetail(detail.body);
      else clearDetail();
    } else {
      clearDetail();
    }
  } catch (err) {
    show(callsError, `could not load calls: ${err.message}`);
  }
}

async function tick() {
  if (!state.busy) {
    state.busy = true;
    try {
      if (state.polls % READY_EVERY === 0) await refreshReady();
      state.polls += 1;
      if (state.signedIn) await refresh();
    } finally {
      state.busy = false;
    }
  }
  setTimeout(tick, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("place-form").addEventListener("submit", placeCall);
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signOut(undefined, false));
  start();
});
