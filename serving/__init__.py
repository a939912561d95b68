"""Model serving: launch and supervise vLLM, the embedded model, the pool and its clients.

serving/ owns processes, endpoints, HTTP clients, health, retries and failover; nothing else in
brickwork opens a connection to a model.
"""
