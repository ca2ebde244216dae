"""The one policy enforcement point: who is asking (principal), what they may ask
(`restrict`, pushed into queries) and what may leave (`disclose`, applied to every
resource of every response by the one function that writes responses)."""
