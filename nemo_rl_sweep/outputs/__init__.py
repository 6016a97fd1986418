"""What a sweep leaves and shows: the result files, the summary, the plots, the live progress lines
and the ``report`` command, all written from the ledger with the shared formatting of ``format``."""
