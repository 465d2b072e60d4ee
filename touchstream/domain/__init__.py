"""The pure core: no faust, aiokafka, redis or prometheus_client imports, ever.

Every business rule lives here and maps (state, event, rules) -> (new state, decisions).
"""
