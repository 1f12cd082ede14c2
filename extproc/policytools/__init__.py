"""Policy as code: test suites (``policy test``), ``explain``, access ``diff``
and the editor JSON Schema, all running the processor's real pipeline in
process (``extproc.policytools.harness``)."""
