"""The harness: what drives a client, the mock and real servers together. It sits above both the library
(`contracts`) and the mock (`mockgen`), and nothing below imports it (`make lint` checks this).

- `fuzz/`: the client fuzzer (plans, runner, invariants, state machine, workers, reports);
- `corpus/`: the scenario corpus, one YAML file per service, and its loader; `scenario.py`: what runs it;
- `live.py`: `contracts check` against real servers; `differential.py`: the same corpus on the mock and a
  real server, compared step by step;
- `cli.py`: the `contracts` command."""
