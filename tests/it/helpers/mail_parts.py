"""Prints a received email as JSON: its header lines as received (name,
value), and its decoded text and HTML parts. Reads the .eml file given."""
import email
import email.policy
import json
import sys

raw = open(sys.argv[1], "rb").read()
head = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
names = []
for line in head.splitlines():
    if line[:1] in (b" ", b"\t"):
        continue
    names.append(line.split(b":", 1)[0].decode("ascii", "replace"))
msg = email.message_from_bytes(raw, policy=email.policy.default)
text = msg.get_body(preferencelist=("plain",))
html = msg.get_body(preferencelist=("html",))
print(json.dumps({
    "header_names": names,
    "headers": {k: str(v) for k, v in msg.items()},
    "text": text.get_content() if text else None,
    "html": html.get_content() if html else None,
}))
