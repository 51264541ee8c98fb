"""HTTP translation service (FastAPI); arrives with the service milestone."""
