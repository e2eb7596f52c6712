"""llm/litellm@1: chat completion through LiteLLM."""
