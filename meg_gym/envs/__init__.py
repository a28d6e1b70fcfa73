"""The MEG environments, one module each (the Env and its natively batched VectorEnv live together)."""
