"""Real servers on 127.0.0.1 that stand in for remote services in tests (see each module's
docstring for what it models and what it does not)."""
