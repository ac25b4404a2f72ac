"""Client-side fuzzing: serve a client every answer the contract allows, then check it kept its promises.

target(context) or target(letta_url, matrix_url, workdir)   an async callable named `module:callable`
plan                                      world (agents, list formats) + faults drawn from the contract
run twice                                 once with the faults installed, once without
invariants                                small named checks over what happened (a registry)
"""

from contracts.harness.fuzz.target import Account, FuzzContext, Target, fuzz_target, load_target

__all__ = ["Account", "FuzzContext", "Target", "fuzz_target", "load_target"]
