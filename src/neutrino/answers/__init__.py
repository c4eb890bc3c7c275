"""Answers to the questions users bring: a trace with the OpenStack objects named
(:mod:`.objects`), what to change when a packet does not get through (:mod:`.diagnose`)."""
