"""Build the OpenAI-SDK client for the LLM orchestrator: OpenAI, Azure OpenAI, or any compatible URL.

The app's lifespan should build it once and pass it to every ``build_orchestrator`` call (one HTTP
connection pool for all calls). The SDK's own retries are off: the orchestrator retries itself, after
speaking a holding line, so the caller never sits in silence while the SDK backs off.
"""

from __future__ import annotations

import logging
from typing import Any

from openai import AsyncAzureOpenAI, AsyncOpenAI

log = logging.getLogger("callwright.agents.llm")

_ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"


def make_llm_client(settings: Any) -> AsyncOpenAI:
    timeout = float(settings.llm_timeout_seconds)
    if settings.azure_openai_endpoint:
        key = settings.azure_openai_api_key.get_secret_value() if settings.azure_openai_api_key else None
        if key:
            return AsyncAzureOpenAI(
                azure_endpoint=settings.azure_openai_endpoint,
                api_key=key,
                api_version=settings.azure_openai_api_version,
                timeout=timeout,
                max_retries=0,
            )
        try:
            from azure.identity.aio import DefaultAzureCredential, get_bearer_token_provider
        except ImportError as exc:
            raise RuntimeError(
                "AZURE_OPENAI_ENDPOINT is set without AZURE_OPENAI_API_KEY; install azure-identity "
                "(pip install 'callwright[azure]') to sign in with an Entra credential"
            ) from exc
        provider = get_bearer_token_provider(DefaultAzureCredential(), _ENTRA_SCOPE)
        return AsyncAzureOpenAI(
            azure_endpoint=settings.azure_openai_endpoint,
            azure_ad_token_provider=provider,
            api_version=settings.azure_openai_api_version,
            timeout=timeout,
            max_retries=0,
        )
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if not key and not settings.openai_base_url:
        raise RuntimeError("AGENT_ENGINE=llm needs OPENAI_API_KEY, OPENAI_BASE_URL or AZURE_OPENAI_ENDPOINT")
    # Local servers (Ollama, vLLM) accept any key; the SDK insists on one.
    return AsyncOpenAI(api_key=key or "not-needed", base_url=settings.openai_base_url, timeout=timeout, max_retries=0)


def model_name(settings: Any) -> str:
    """Azure routes by deployment name; everything else by model name."""
    if settings.azure_openai_endpoint and settings.azure_openai_deployment:
        return str(settings.azure_openai_deployment)
    return str(settings.openai_model)
