"""The test and demo kit, apart from the auditing code: nothing under the stages or pipeline imports it.

- :mod:`hubaudit.demo.fakehub`: a Hub-compatible loopback server (tests, ``hubaudit demo``, benchmarks);
- :mod:`hubaudit.demo.synth`: real peft training of clean and backdoored LoRA adapters, and the demo cohort;
- :mod:`hubaudit.demo.flow`: the ``hubaudit demo`` run (publish, crawl, calibrate, probe, report) and
  :mod:`hubaudit.demo.story`, the sentences it tells;
- ``data/``: the committed float16 demo cohort, shipped in the wheel as package data.

The kit may import the stages and pipeline (it drives them as a user would); the auditing code never
imports the kit, and no module here changes the process environment.
"""
