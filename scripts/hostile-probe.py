#!/usr/bin/env python3
"""Publishes the hostile-input probe of issue #10 with nats-py, as a foreign producer would.

Onto `auth.user.created` of a running backbone (scripts/dev-up.sh), in this order:
  1. a valid event (user probe-ok-1)
  2. an event whose header block is not UTF-8 (value b"\\x80\\xff")
  3. an event whose body is close to the server's max_payload (data the catalog refuses)
  4. a forged event: type auth.user.deleted stored on auth.user.created
  5. a binary-mode event with case-duplicated ce-organizationid headers
  6. a valid event (user probe-ok-2)
Prints one JSON line per message: what it was and the stream sequence it got.

    pip install nats-py
    python3 scripts/hostile-probe.py [--url nats://127.0.0.1:4222] [--org org-probe]
"""

import argparse
import asyncio
import json
import uuid
from datetime import datetime, timezone

import nats
from nats.protocol import command as prot_command

SUBJECT = "auth.user.created"


def event(org, ty, data):
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "hostile-probe",
        "type": ty,
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "organizationid": org,
        "schemaversion": "1.0",
        "datacontenttype": "application/json",
        "data": data,
    }


def user(org, user_id):
    return event(org, SUBJECT, {"user_id": user_id, "email": f"{user_id}@probe.example",
                                "display_name": user_id, "roles": [], "revision": 1})


def structured(ev):
    headers = {"Content-Type": "application/cloudevents+json", "Nats-Msg-Id": ev["id"]}
    return headers, json.dumps(ev).encode()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="nats://127.0.0.1:4222")
    ap.add_argument("--org", default="org-probe")
    args = ap.parse_args()
    nc = await nats.connect(args.url)
    js = nc.jetstream()
    max_payload = nc.max_payload
    org = args.org

    async def pub(what, headers, body):
        ack = await js.publish(SUBJECT, body, headers=headers, timeout=10)
        print(json.dumps({"what": what, "seq": ack.seq, "bytes": len(body)}), flush=True)

    async def pub_raw(what, header_block, body):
        # nats-py refuses bytes header values; its own protocol writer still sends them.
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, max_msgs=1)
        await nc._send_command(prot_command.hpub_cmd(SUBJECT, inbox, header_block, body))
        await nc.flush()
        msg = await sub.next_msg(timeout=10)
        print(json.dumps({"what": what, "ack": json.loads(msg.data), "bytes": len(body)}), flush=True)

    await pub("valid 1", *structured(user(org, "probe-ok-1")))

    ev = user(org, "probe-bad-utf8")
    block = (b"NATS/1.0\r\nContent-Type: application/cloudevents+json\r\n"
             b"Nats-Msg-Id: " + ev["id"].encode() + b"\r\nX-Bad: \x80\xff\r\n\r\n")
    await pub_raw("non-utf8 header", block, json.dumps(ev).encode())

    big = event(org, SUBJECT, {"blob": ""})
    headers, body = structured(big)
    room = max_payload - len(body) - 600  # leave room for the publish's own headers
    big["data"]["blob"] = "x" * room
    await pub("near max_payload", *structured(big))

    await pub("forged type", *structured(event(org, "auth.user.deleted",
                                               {"user_id": "probe-ok-1"})))

    dup = {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-source": "hostile-probe",
           "ce-type": SUBJECT, "ce-time": datetime.now(timezone.utc).isoformat(),
           "ce-organizationid": org, "CE-OrganizationId": "org-other",
           "ce-schemaversion": "1.0", "ce-datacontenttype": "application/json",
           "Content-Type": "application/json"}
    await pub("case-duplicated ce- header", dup,
              json.dumps({"user_id": "probe-dup", "email": "dup@probe.example",
                          "display_name": "dup", "roles": [], "revision": 1}).encode())

    await pub("valid 2", *structured(user(org, "probe-ok-2")))
    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main())
