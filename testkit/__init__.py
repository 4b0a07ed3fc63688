"""What the tests and the benchmarks share: ``envgrid run`` as a subprocess with the bookkeeping
that proves delivery (``service_proc``), an MQTT client (``mqtt``) and HJ 212 station load
(``stations``). Not shipped, and no envgrid package may import it: it may import them.
"""
