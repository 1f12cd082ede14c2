"""The prompt guard's local model tier (see ``classifier``)."""
