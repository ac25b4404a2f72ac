"""The Matrix users the bridge acts as: the server admin, the bot, and one user per Letta agent."""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable

from letta_matrix_reference.bridge.config import BridgeConfig
from letta_matrix_reference.bridge.errors import (
    AgentUserConflict,
    ApiError,
    ConfigurationError,
    ProtocolError,
)
from letta_matrix_reference.bridge.letta import Agent
from letta_matrix_reference.bridge.matrix import Credentials, MatrixClient, MatrixHomeserver
from letta_matrix_reference.bridge.store import AgentRecord, BridgeState, Persister

log = logging.getLogger(__name__)

AGENT_LOCALPART_PREFIX = "letta_"
MAX_DISPLAY_NAME = 256  # Synapse refuses longer display names
ClientSource = Callable[[], Awaitable[MatrixClient]]


def ready(client: MatrixClient) -> ClientSource:
    """A `ClientSource` for a client already at hand."""

    async def source() -> MatrixClient:
        return client

    return source


def agent_localpart(agent_id: str) -> str:
    """The agent user's localpart: from the agent's id only, so it survives renames. Letta ids are
    `agent-<uuid4>`: the uuid's hex; anything else gets a hash, which is as stable and always valid."""
    try:
        return AGENT_LOCALPART_PREFIX + uuid.UUID(agent_id.removeprefix("agent-")).hex
    except ValueError:
        return AGENT_LOCALPART_PREFIX + hashlib.sha256(agent_id.encode()).hexdigest()[:32]


def user_id_for(user: str, server_name: str) -> str:
    """A configured user (a localpart or a full user id) as a full user id."""
    return user if user.startswith("@") else f"@{user.lower()}:{server_name}"


def display_name_for(agent: Agent) -> str:
    return agent.name[:MAX_DISPLAY_NAME]


def display_name_as_stored(name: str) -> str:
    """The display name a homeserver keeps for `name` sent as one: Synapse strips surrounding whitespace."""
    return name[:MAX_DISPLAY_NAME].strip()


class UserManager:
    def __init__(
        self, homeserver: MatrixHomeserver, config: BridgeConfig, state: BridgeState, persister: Persister
    ) -> None:
        self.homeserver = homeserver
        self.config = config
        self.state = state
        self.persister = persister

    # -- the admin and the bot

    async def log_in_admin(self) -> MatrixClient:
        """The admin's client, once the homeserver has shown `server_name` to be its name: every user id
        the bridge makes (and records) ends in it, so with another the mapping would name nobody."""
        user = self.config.admin_user
        try:
            admin = await self._log_in(user, self.config.admin_password)
        except ApiError as exc:
            raise ConfigurationError(
                f"the admin user {user} cannot log in to {self.config.matrix_url} ({exc.status} "
                f"{exc.errcode or ''}); check --admin-user / --admin-password (MATRIX_ADMIN_USER / "
                "MATRIX_ADMIN_PASSWORD)"
            ) from exc
        server = admin.user_id.partition(":")[2]
        if server != self.config.server_name:
            raise ConfigurationError(
                f"the homeserver calls the admin {admin.user_id}, so its server name is {server!r}, not "
                f"{self.config.server_name!r}; set --server-name / MATRIX_SERVER_NAME to {server!r}"
            )
        return admin

    async def ensure_bot(self, admin: MatrixClient) -> MatrixClient:
        """Log the bot in, creating its account with the admin API first if there is none."""
        user_id = user_id_for(self.config.bot_user, self.config.server_name)
        try:
            return await self._log_in(self.config.bot_user, self.config.bot_password)
        except ApiError as exc:
            if exc.status != 403 or exc.errcode == "M_USER_DEACTIVATED":
                raise self._bot_error(user_id, "cannot log in", exc) from exc
        # Synapse answers the same 403 for "no such user" and "wrong password"; the admin API tells which.
        # An existing account's password is never overwritten: that would lock out whoever uses it.
        try:
            await admin.admin_get_user(user_id)
        except ApiError as exc:
            if exc.status != 404:
                raise self._bot_error(user_id, "cannot be looked up with the admin API", exc) from exc
        else:
            raise ConfigurationError(
                f"the bot user {user_id} exists but refuses the configured password; check --bot-password "
                "(MATRIX_BOT_PASSWORD)"
            )
        try:
            await admin.admin_put_user(
                user_id, {"password": self.config.bot_password, "admin": False, "user_type": "bot"}
            )
        except ApiError as exc:
            raise self._bot_error(user_id, "cannot be created with the admin API", exc) from exc
        log.info("created the bot user %s", user_id)
        try:
            return await self._log_in(self.config.bot_user, self.config.bot_password)
        except ApiError as exc:
            raise self._bot_error(user_id, "was created but cannot log in", exc) from exc

    @staticmethod
    def _bot_error(user_id: str, what: str, exc: ApiError) -> ConfigurationError:
        return ConfigurationError(
            f"the bot user {user_id} {what} ({exc.status} {exc.errcode or ''}: {exc.detail or ''}); check "
            "--bot-user / --bot-password and that the admin user is a server admin"
        )

    async def _log_in(self, user: str, password: str) -> MatrixClient:
        """Log in on the device of this user's previous login, if any."""
        user_id = user_id_for(user, self.config.server_name)
        client = await self.homeserver.login(user, password, device_id=self.state.devices.get(user_id))
        if client.credentials.device_id is not None:
            self.state.devices[client.user_id] = client.credentials.device_id
        return client

    # -- agent users

    def new_record(self, agent: Agent) -> AgentRecord:
        """The record of an agent seen for the first time, with the password its user will get."""
        localpart = agent_localpart(agent.id)
        return AgentRecord(
            agent_id=agent.id,
            name=agent.name,
            user_id=f"@{localpart}:{self.config.server_name}",
            password=secrets.token_urlsafe(32),
        )

    async def ensure_agent_user(self, record: AgentRecord) -> tuple[bool, MatrixClient | None]:
        """Register the agent's user unless that is done: (whether this call created it, its client if
        this call logged it in)."""
        if record.registered:
            return False, None
        localpart = agent_localpart(record.agent_id)
        created = True
        try:
            client = await self.homeserver.register(localpart, record.password)
        except ApiError as exc:
            if exc.status == 403:
                raise ConfigurationError(
                    f"the homeserver refuses to register users ({exc.errcode}: {exc.detail}); the bridge "
                    "needs open registration (m.login.dummy) for its agent users"
                ) from exc
            if exc.errcode != "M_USER_IN_USE":
                raise
            # Taken: ours from an earlier run that did not get to record it, if our password still works.
            client = await self._adopt(record)
            created = False
        if client.user_id != record.user_id:
            raise ProtocolError(f"registering {localpart} made {client.user_id}, not {record.user_id}")
        self.remember(record, client)
        record.registered = True
        # Saved before anything else can fail: the next run must know this user is ours.
        await self.persister.commit()
        if created:
            log.info("registered %s for agent %s", record.user_id, record.agent_id)
        else:
            log.info("adopted the existing %s for agent %s", record.user_id, record.agent_id)
        return created, client

    async def _adopt(self, record: AgentRecord) -> MatrixClient:
        try:
            return await self.homeserver.login(record.user_id, record.password, device_id=record.device_id)
        except ApiError as exc:
            if exc.status != 403:
                raise
            reason = (
                "it is deactivated"
                if exc.errcode == "M_USER_DEACTIVATED"
                else "the password stored for it is refused"
            )
            raise AgentUserConflict(record.user_id, record.agent_id, reason) from exc

    async def agent_client(self, record: AgentRecord) -> MatrixClient:
        """A client for a registered agent user: its stored session, else a new login."""
        if record.access_token is not None:
            credentials = Credentials(record.user_id, record.access_token, record.device_id)
            return self.homeserver.client(credentials, password=record.password)
        client = await self._adopt(record)
        self.remember(record, client)
        return client

    @staticmethod
    def remember(record: AgentRecord, client: MatrixClient) -> None:
        """Keep the agent's current session (it changes when the client had to log in again)."""
        record.access_token = client.credentials.access_token
        record.device_id = client.credentials.device_id

    @staticmethod
    async def ensure_display_name(record: AgentRecord, agent: Agent, client: ClientSource) -> bool:
        """Give the agent user the agent's name; whether an earlier name was replaced."""
        wanted = display_name_for(agent)
        if record.displayname == wanted:
            return False
        await (await client()).set_display_name(wanted)
        renamed = record.displayname is not None
        record.displayname = wanted
        return renamed
