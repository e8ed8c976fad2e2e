"""Settings, from EE_* environment variables (or a .env file); tests override `get_settings`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EE_", env_file=".env", extra="ignore")

    # Language model
    model_path: Path | None = Field(None, description="GGUF file; default: the embedded SmolLM2-135M-Instruct")
    weight_format: Literal["fp32", "fp16"] = Field("fp16", description="CPU weight format of the builtin decoder")
    max_batch: int = Field(16, ge=1, le=256, description="sequences decoded together per step")
    kv_cache_budget_mb: int = Field(512, ge=1, description="memory for all sessions' KV caches")
    context_overflow: Literal["truncate", "error"] = Field("truncate", description="prompt longer than the context")
    cache_dir: Path | None = Field(None, description="dequantised-weight cache; default ~/.cache/emotional-engine")
    emotion_adapter: bool = Field(True, description="use the shipped emotion-attention adapter with the embedded model")
    # OpenAI-compatible backend (vLLM, Ollama, llama.cpp server); used when base_url is set
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    openai_model: str | None = None


@lru_cache
def get_settings() -> Settings:
    return Settings()
