"""Orchestration: the only place that wires stages together.

One module per flow (``ingest``, ``calibrate``, ``crawl``, ...). A flow takes its settings and an
open Store as arguments, calls the stages, and commits to the store after every item so a killed
run resumes where it stopped. CLI modules parse options and call exactly one flow.
"""
