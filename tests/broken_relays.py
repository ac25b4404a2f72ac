"""Relays with a planted bug each, for the fuzzer to catch (tests_fuzz/test_fuzz_relay.py)."""

from __future__ import annotations

from typing import Any

from contracts.harness.fuzz import FuzzContext
from contracts.harness.fuzz.target import fuzz_target
from letta_matrix_reference.bridge.relay import Relay
from letta_matrix_reference.bridge.target import EXPECTED_EXCEPTIONS, relay_against


class TokenFirst(Relay):
    """Saves the sync token before the batch is answered: a crash in between loses the batch."""

    async def _batch(self, body: dict[str, Any]) -> bool:
        self.store.state.since = body["next_batch"]
        await self.store.save()
        return await super()._batch(body)


class AnswersTheBot(Relay):
    """Takes the bot for a person: the bot's own messages go to Letta."""

    async def start(self) -> None:
        await super().start()
        assert self._bot is not None
        self.bridge_users = self.bridge_users - {self._bot.user_id}


@fuzz_target(expected_exceptions=EXPECTED_EXCEPTIONS, relays=True)
async def token_first(context: FuzzContext) -> None:
    await relay_against(context, relay_class=TokenFirst)


@fuzz_target(expected_exceptions=EXPECTED_EXCEPTIONS, relays=True)
async def answers_the_bot(context: FuzzContext) -> None:
    await relay_against(context, relay_class=AnswersTheBot)
