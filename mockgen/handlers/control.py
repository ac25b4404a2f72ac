"""Control API handlers: one function per operationId of specs/mock-control.yaml (snake_case)."""

from __future__ import annotations

from mockgen import control
from mockgen.http.dialects import Reply
from mockgen.http.dispatch import Call


def control_health(call: Call) -> Reply:
    return Reply(200, {"status": "ok", "service": call.service})


def control_reset(call: Call) -> Reply:
    call.world.reset()
    return Reply(200, {"reset": True})


def control_state(call: Call) -> Reply:
    return Reply(200, call.world.snapshot())


def control_seed(call: Call) -> Reply:
    return Reply(200, call.world.apply_seed(call.body))


def control_add_agent(call: Call) -> Reply:
    return Reply(201, control.add_agent(call.world, call.body))


def control_rename_agent(call: Call) -> Reply:
    return Reply(200, control.rename_agent(call.world, call.path["agent_id"], call.body["name"]))


def control_remove_agent(call: Call) -> Reply:
    return Reply(200, control.remove_agent(call.world, call.path["agent_id"]))


def control_script_turns(call: Call) -> Reply:
    return Reply(200, control.script_turns(call.world, call.path["agent_id"], call.body["turns"]))


def control_get_format(call: Call) -> Reply:
    return Reply(200, call.world.letta_format())


def control_set_format(call: Call) -> Reply:
    return Reply(200, call.world.set_letta_format(call.body.get("agents"), call.body.get("messages")))


def control_list_faults(call: Call) -> Reply:
    return Reply(200, call.world.faults.list())


def control_add_fault(call: Call) -> Reply:
    return Reply(201, control.install_fault(call.world, call.body).to_json())


def control_clear_faults(call: Call) -> Reply:
    return Reply(200, {"removed": call.world.faults.clear()})


def control_journal(call: Call) -> Reply:
    query = call.query
    return Reply(
        200,
        control.journal_page(
            call.world,
            since=int(query.get("since", 0)),
            service=query.get("service"),
            operation=query.get("operation"),
        ),
    )


def control_clear_journal(call: Call) -> Reply:
    return Reply(200, {"removed": call.world.journal.clear()})
