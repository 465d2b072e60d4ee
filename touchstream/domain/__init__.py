"""The pure core: no faust, aiokafka, redis or prometheus_client imports, ever, not even through
another module (tests/unit/domain/test_purity.py).

Every business rule lives here and maps (state, event, rules) -> (new state, decisions).
"""
