"""Running the whole gateway on one machine without Docker: `extproc up`,
and the same building blocks the end-to-end tests and benchmarks use."""
