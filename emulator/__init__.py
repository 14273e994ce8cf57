"""Local stand-in for the Extend API, served by uvicorn; the other side of the contract."""
