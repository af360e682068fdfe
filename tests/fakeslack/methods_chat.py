"""Fake Web API methods for messages: auth.test, chat.*, reactions.add, conversations.*."""

from __future__ import annotations

from typing import Any

from .blocks import MAX_MESSAGE_BLOCKS, validate_blocks
from .records import Ephemeral, Message, ts_key
from .store import MAX_TEXT_CHARS, Workspace
from .webapi import ApiError, CallContext, Method, flag, require


def postable_channel(ws: Workspace, channel_id: Any) -> dict[str, Any]:
    """The channel the bot may post in, or the error Slack gives (slack.md §19.4)."""
    channel = ws.channels.get(str(channel_id))
    if channel is None:
        raise ApiError("channel_not_found")
    if channel.get("is_archived"):
        raise ApiError("is_archived")
    if not channel["bot_member"]:
        if channel["is_private"]:
            raise ApiError("channel_not_found")  # a private channel the bot is not in is invisible
        if "chat:write.public" not in ws.scopes:
            raise ApiError("not_in_channel")
    return channel


def checked_blocks(args: dict[str, Any]) -> list[Any] | None:
    blocks = args.get("blocks")
    errors = validate_blocks(blocks, max_blocks=MAX_MESSAGE_BLOCKS)
    if errors:
        raise ApiError("invalid_blocks", errors=errors,
                       response_metadata={"messages": [f"[ERROR] {e}" for e in errors]})
    return blocks if blocks else None


def _bot_message(ws: Workspace, message: Message) -> bool:
    return bool(message.bot_id == ws.bot["bot_id"] and message.user == ws.bot["user_id"])


def store_bot_message(ws: Workspace, channel: str, text: str, blocks: list[Any] | None, *,
                      thread_ts: str | None = None, reply_broadcast: bool = False,
                      source: str = "api", **extra: Any) -> Message:
    """Store a message from the bot; `thread_ts` must already be resolved to the thread's root."""
    truncated = len(text) > MAX_TEXT_CHARS
    message = Message(channel=channel, ts=ws.next_ts(), text=text[:MAX_TEXT_CHARS], blocks=blocks,
                      user=ws.bot["user_id"], bot_id=ws.bot["bot_id"], thread_ts=thread_ts,
                      reply_broadcast=reply_broadcast and thread_ts is not None, truncated=truncated,
                      source=source, **extra)
    ws.messages.append(message)
    return message


def thread_root(ws: Workspace, channel: str, thread_ts: str) -> str:
    parent = ws.find_message(channel, thread_ts)
    if parent is None:
        # Slack's exact answer is not established; the fake fails loudly so the bug is seen.
        raise ApiError("thread_not_found", detail=f"no message {thread_ts} in {channel} to reply to")
    return parent.thread_ts or parent.ts  # a reply's ts threads under the same root


def auth_test(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    return {"url": f"{ctx.base_url}/", "team": ws.team["name"], "user": ws.bot["name"],
            "team_id": ws.team["id"], "user_id": ws.bot["user_id"], "bot_id": ws.bot["bot_id"],
            "app_id": ws.bot["app_id"], "is_enterprise_install": False}


def post_message(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    channel = postable_channel(ws, require(args, "channel"))["id"]
    text = str(args.get("text") or "")
    blocks = checked_blocks(args)
    if not text and not blocks and not args.get("attachments"):
        raise ApiError("no_text")
    thread_ts = args.get("thread_ts") or None
    if thread_ts is not None:
        thread_ts = thread_root(ws, channel, str(thread_ts))
    message = store_bot_message(ws, channel, text, blocks, thread_ts=thread_ts,
                                reply_broadcast=flag(args.get("reply_broadcast")),
                                attachments=args.get("attachments") or None, metadata=args.get("metadata"))
    out: dict[str, Any] = {"channel": channel, "ts": message.ts,
                           "message": message.to_slack(ws.team["id"], ws.bot["app_id"])}
    if message.truncated:
        out["warning"] = "message_truncated"
    return out


def update_message(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    channel, ts = str(require(args, "channel")), str(require(args, "ts"))
    if channel not in ws.channels:
        raise ApiError("channel_not_found")
    message = ws.find_message(channel, ts)
    if message is None:
        raise ApiError("message_not_found")  # also for ephemeral messages, which cannot be updated
    if not _bot_message(ws, message):
        raise ApiError("cant_update_message")
    text = args.get("text")
    if text is not None and len(str(text)) > MAX_TEXT_CHARS:
        raise ApiError("msg_too_long")
    blocks = checked_blocks(args)
    if text in (None, "") and blocks is None and "blocks" not in args and not args.get("attachments"):
        raise ApiError("no_text")
    message.history.append({**message.version(), "replaced_at": ws.clock.now()})
    message.edits += 1
    if text is not None:
        message.text = str(text)
    if "blocks" in args:  # omitted blocks are kept; an empty array removes them (Slack's rule)
        message.blocks = blocks
    if "attachments" in args:
        message.attachments = args["attachments"] or None
    if "metadata" in args:
        message.metadata = args["metadata"]
    return {"channel": channel, "ts": ts, "text": message.text,
            "message": message.to_slack(ws.team["id"], ws.bot["app_id"])}


def post_ephemeral(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    channel = postable_channel(ws, require(args, "channel"))
    user = str(require(args, "user"))
    if user not in ws.users:
        raise ApiError("user_not_found")
    if user not in channel["members"]:
        raise ApiError("user_not_in_channel")
    text = str(args.get("text") or "")
    blocks = checked_blocks(args)
    if not text and not blocks and not args.get("attachments"):
        raise ApiError("no_text")
    eph = Ephemeral(channel=channel["id"], user=user, ts=ws.next_ts(), text=text, blocks=blocks,
                    thread_ts=args.get("thread_ts") or None)
    ws.ephemerals.append(eph)
    return {"message_ts": eph.ts}


def delete_message(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    channel, ts = str(require(args, "channel")), str(require(args, "ts"))
    message = ws.find_message(channel, ts)
    if message is None:
        raise ApiError("message_not_found")
    if not _bot_message(ws, message):
        raise ApiError("cant_delete_message")
    message.deleted = True
    return {"channel": channel, "ts": ts}


def get_permalink(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    channel, ts = str(require(args, "channel")), str(require(args, "message_ts"))
    message = ws.find_message(channel, ts)
    if message is None:
        raise ApiError("message_not_found")
    link = f"{ctx.base_url}/archives/{channel}/p{ts.replace('.', '')}"
    if message.thread_ts:
        link += f"?thread_ts={message.thread_ts}&cid={channel}"
    return {"channel": channel, "permalink": link}


def add_reaction(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    channel, ts = str(require(args, "channel")), str(require(args, "timestamp"))
    name = str(require(args, "name"))
    message = ws.find_message(channel, ts)
    if message is None:
        raise ApiError("message_not_found")
    if any(r["name"] == name and r["user"] == ws.bot["user_id"] for r in message.reactions):
        raise ApiError("already_reacted")
    message.reactions.append({"name": name, "user": ws.bot["user_id"]})
    return {}


def _visible_channel(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    channel = ws.channels.get(str(require(args, "channel")))
    if channel is None or (channel["is_private"] and not channel["bot_member"]):
        raise ApiError("channel_not_found")
    return channel


def conversations_info(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    channel = _visible_channel(ws, args)
    return {"channel": {"id": channel["id"], "name": channel["name"], "is_channel": not channel["is_private"],
                        "is_group": channel["is_private"], "is_private": channel["is_private"],
                        "is_member": channel["bot_member"], "is_archived": bool(channel.get("is_archived")),
                        "num_members": len(channel["members"]), "context_team_id": ws.team["id"]}}


def conversations_replies(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    channel = _visible_channel(ws, args)
    items = ws.thread(channel["id"], str(require(args, "ts")))
    if not items:
        raise ApiError("thread_not_found")
    return {"messages": [m.to_slack(ws.team["id"], ws.bot["app_id"]) for m in items], "has_more": False}


def conversations_history(ws: Workspace, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    channel = _visible_channel(ws, args)
    items = sorted(ws.timeline(channel["id"]), key=ts_key, reverse=True)[: int(args.get("limit") or 100)]
    return {"messages": [m.to_slack(ws.team["id"], ws.bot["app_id"]) for m in items], "has_more": False}


def _history_scope(ws: Workspace, args: dict[str, Any]) -> str:
    channel = ws.channels.get(str(args.get("channel")))
    return "groups:history" if channel and channel["is_private"] else "channels:history"


def _read_scope(ws: Workspace, args: dict[str, Any]) -> str:
    channel = ws.channels.get(str(args.get("channel")))
    return "groups:read" if channel and channel["is_private"] else "channels:read"


CHAT_METHODS = {
    "auth.test": Method(auth_test),
    "chat.postMessage": Method(post_message, scope="chat:write"),
    "chat.update": Method(update_message, scope="chat:write"),
    "chat.postEphemeral": Method(post_ephemeral, scope="chat:write"),
    "chat.delete": Method(delete_message, scope="chat:write"),
    "chat.getPermalink": Method(get_permalink),
    "reactions.add": Method(add_reaction, scope="reactions:write"),
    "conversations.info": Method(conversations_info, scope=_read_scope),
    "conversations.replies": Method(conversations_replies, scope=_history_scope),
    "conversations.history": Method(conversations_history, scope=_history_scope),
}
