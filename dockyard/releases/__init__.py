"""The operator's moves and their records: facts fetched (:mod:`.project`, :mod:`.engine`, the registry, trust and
attestations), judged by pure gates (:mod:`.gates`), applied as one previewed stack update (:mod:`.stack_update`) by
:mod:`.moves`; the flows that check before and after they move (:mod:`.progressive`); the history, ledger, metrics (also
as OpenMetrics, :mod:`.metrics_export`) and doctor the CLI reports from."""
