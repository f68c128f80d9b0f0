#!/usr/bin/env python3
"""Generate samples/background-day-4node: one noisy but healthy day on a 4-node cluster.

Everything this script writes is SYNTHETIC. It is deterministic: the RNG is
seeded and no clock, locale or environment value is read, so running it again
rewrites the same bytes (check with `sha256sum` before and after).

    python3 generate.py            # writes next to this file

The first half of the file holds the renderers (one function per Windows export
format); the second half builds the day's events and decides which host file
carries which channel. The renderers follow shared/knowledge/formats.md; where
that page marks a shape as inferred, the choice made here is noted in ../README.md.
"""

import datetime as dt
import json
import os
import random
import struct
import uuid
from dataclasses import dataclass, field
from typing import Optional

# --------------------------------------------------------------------------
# Event model
# --------------------------------------------------------------------------

NS_EVENT = "http://schemas.microsoft.com/win/2004/08/events/event"
NS_VML = "http://www.microsoft.com/Windows/Virtualization/Events"
NS_AUTO2 = "http://schemas.microsoft.com/win/2004/08/events"

# Provider -> GUID as Windows shows it. None = not known from any source
# (hyperv-kb.md section 1), so the attribute/field is left out.
PROVIDER_GUID = {
    "Microsoft-Windows-Hyper-V-VMMS": "{6066F867-7CA1-4418-85FD-36E3F9C0600C}",
    "Microsoft-Windows-Hyper-V-Worker": "{51DDFA29-D5C8-4803-BE4B-2ECB715570FE}",
    "Microsoft-Windows-Hyper-V-High-Availability": None,
    "Microsoft-Windows-FailoverClustering": "{BAF908EA-3421-4CA9-9B84-6689B8C6F85F}",
    "Service Control Manager": "{555908d1-a6d7-4695-8e1e-26931d2012f4}",
    "Microsoft-Windows-Kernel-General": "{A68CA8B7-004F-D7B6-A698-07E2DE0F1F5D}",
    "Microsoft-Windows-Time-Service": "{06EDCFEB-0FD0-4E53-ACCA-A6F8BBF81BCB}",
    "Microsoft-Windows-DNS-Client": "{1C95126E-7EEA-49A9-A3FE-A378B03DDB4D}",
}
EVENT_SOURCE_NAME = {"Service Control Manager": "Service Control Manager"}

LEVEL_NAME = {0: "Information", 1: "Critical", 2: "Error", 3: "Warning", 4: "Information", 5: "Verbose"}

WELL_KNOWN = {
    "S-1-5-18": ("NT AUTHORITY", "SYSTEM"),
    "S-1-5-19": ("NT AUTHORITY", "LOCAL SERVICE"),
    "S-1-5-20": ("NT AUTHORITY", "NETWORK SERVICE"),
}


def vm_sid(vm_id: str) -> str:
    """NT VIRTUAL MACHINE\\<GUID> account SID: the GUID's four little-endian DWORDs."""
    parts = struct.unpack("<4I", uuid.UUID(vm_id).bytes_le)
    return "S-1-5-83-1-" + "-".join(str(p) for p in parts)


@dataclass
class Ev:
    host: str                      # Computer as logged (FQDN)
    channel: str
    provider: str
    event_id: int
    level: int
    t: dt.datetime                 # naive UTC, whole seconds
    frac7: int                     # 100-ns ticks within the second (0..9999999)
    message: str                   # rendered text, lines separated by "\n"
    pid: int = 0
    tid: int = 0
    user_sid: Optional[str] = "S-1-5-18"
    user_vm: Optional[str] = None  # VM GUID when the user is NT VIRTUAL MACHINE\<GUID>
    data_kind: Optional[str] = None  # "user" (UserData/VmlEventLog) or "event" (EventData)
    data: list = field(default_factory=list)
    data_attr_name: Optional[str] = None  # <EventData Name="...">
    auto_ns2: bool = False         # Parameter0..2 events carry xmlns:auto-ns2 (formats.md (a))
    binary: Optional[str] = None
    qualifiers: Optional[int] = None
    version: int = 0
    task: int = 0
    opcode: int = 0
    keywords: int = 0x8000000000000000
    keyword_names: list = field(default_factory=list)
    task_name: Optional[str] = None
    activity_id: Optional[str] = None
    record_id: int = 0

    @property
    def short_host(self) -> str:
        return self.host.split(".")[0]

    @property
    def level_name(self) -> str:
        return LEVEL_NAME[self.level]

    @property
    def crlf_message(self) -> str:
        return self.message.replace("\n", "\r\n")

    @property
    def guid(self) -> Optional[str]:
        return PROVIDER_GUID.get(self.provider)

    def key(self):
        return (self.short_host, self.channel, self.record_id)


def assign_record_ids(events, bases):
    """Number records per host+channel in time order, starting at bases[(short, channel)]."""
    counters = dict(bases)
    for ev in sorted(events, key=lambda e: (e.t, e.frac7)):
        k = (ev.short_host, ev.channel)
        ev.record_id = counters[k]
        counters[k] += 1


def by_time(events):
    return sorted(events, key=lambda e: (e.t, e.frac7, e.host, e.record_id))


# --------------------------------------------------------------------------
# Time rendering
# --------------------------------------------------------------------------

EPOCH = dt.datetime(1970, 1, 1)
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def system_time(ev) -> str:
    """Windows 10/2016 ToXml style: 7 significant fraction digits + '00', Z."""
    return ev.t.strftime("%Y-%m-%dT%H:%M:%S") + ".%07d00Z" % ev.frac7


def local(ev, off_h) -> dt.datetime:
    return ev.t + dt.timedelta(hours=off_h)


def us_date_24(t) -> str:      # 9/27/2018 15:36:44
    return "%d/%d/%d %d:%02d:%02d" % (t.month, t.day, t.year, t.hour, t.minute, t.second)


def us_date_12(t) -> str:      # 11/21/2017 4:57:53 AM
    h = t.hour % 12 or 12
    return "%d/%d/%d %d:%02d:%02d %s" % (t.month, t.day, t.year, h, t.minute, t.second,
                                        "AM" if t.hour < 12 else "PM")


def epoch_ms(ev) -> int:
    return int((ev.t - EPOCH).total_seconds()) * 1000 + ev.frac7 // 10000


def iso_ms_z(ev, plus_ms=0) -> str:
    t = ev.t + dt.timedelta(milliseconds=ev.frac7 // 10000 + plus_ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (t.microsecond // 1000)


def offset_str(off_h) -> str:
    return ("+" if off_h >= 0 else "-") + "%02d:00" % abs(off_h)


# --------------------------------------------------------------------------
# XML (formats.md (b)) and Event Viewer text (formats.md (a))
# --------------------------------------------------------------------------

def x_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def x_attr(s: str, q: str) -> str:
    s = x_text(s)
    return s.replace('"', "&quot;") if q == '"' else s.replace("'", "&apos;")


def _system_parts(ev, q):
    """(tag, attrs, text) triples of <System>, in Windows order."""
    prov = [("Name", ev.provider)]
    if ev.guid:
        prov.append(("Guid", ev.guid))
    if ev.provider in EVENT_SOURCE_NAME:
        prov.append(("EventSourceName", EVENT_SOURCE_NAME[ev.provider]))
    corr = [("ActivityID", ev.activity_id)] if ev.activity_id else []
    sec = [("UserID", ev.user_sid)] if ev.user_sid else []
    eid_attrs = [("Qualifiers", str(ev.qualifiers))] if ev.qualifiers is not None else []
    return [
        ("Provider", prov, None),
        ("EventID", eid_attrs, str(ev.event_id)),
        ("Version", [], str(ev.version)),
        ("Level", [], str(ev.level)),
        ("Task", [], str(ev.task)),
        ("Opcode", [], str(ev.opcode)),
        ("Keywords", [], "0x%016X" % ev.keywords if ev.keywords else "0x0"),
        ("TimeCreated", [("SystemTime", system_time(ev))], None),
        ("EventRecordID", [], str(ev.record_id)),
        ("Correlation", corr, None),
        ("Execution", [("ProcessID", str(ev.pid)), ("ThreadID", str(ev.tid))], None),
        ("Channel", [], ev.channel),
        ("Computer", [], ev.host),
        ("Security", sec, None),
    ]


def _attrs(attrs, q):
    return "".join(" %s=%s%s%s" % (k, q, x_attr(v, q), q) for k, v in attrs)


def _vml_open(ev, q):
    attrs = []
    if ev.auto_ns2:
        attrs.append(("xmlns:auto-ns2", NS_AUTO2))
    attrs.append(("xmlns", NS_VML))
    return "<VmlEventLog%s>" % _attrs(attrs, q)


def event_xml_pretty(ev) -> list:
    """Event Viewer 'XML View' / Details-tab rendering (RS example in formats.md (a))."""
    q = '"'
    out = ['<Event xmlns="%s">' % NS_EVENT, "  <System>"]
    for tag, attrs, text in _system_parts(ev, q):
        if text is None:
            out.append("    <%s%s />" % (tag, _attrs(attrs, q)))
        else:
            out.append("    <%s%s>%s</%s>" % (tag, _attrs(attrs, q), x_text(text), tag))
    out.append("  </System>")
    if ev.data_kind == "user":
        out.append("  <UserData>")
        out.append("    " + _vml_open(ev, q))
        for k, v in ev.data:
            out.append("      <%s>%s</%s>" % (k, x_text(v), k))
        out.append("    </VmlEventLog>")
        out.append("  </UserData>")
    elif ev.data_kind == "event":
        out.append("  <EventData%s>" % (_attrs([("Name", ev.data_attr_name)], q) if ev.data_attr_name else ""))
        for k, v in ev.data:
            if v == "":
                out.append('    <Data Name="%s" />' % k)
            else:
                out.append('    <Data Name="%s">%s</Data>' % (k, x_text(v)))
        if ev.binary is not None:
            out.append("    <Binary>%s</Binary>" % ev.binary)
        out.append("  </EventData>")
    out.append("</Event>")
    # Multi-line values (21502's ErrorMessage) keep their CRLF inside the element.
    return "\n".join(out).replace("\r\n", "\n").split("\n")


def event_xml_compact(ev, rendering=True) -> str:
    """wevtutil qe /f:RenderedXml and EventLogRecord.ToXml(): single quotes, no whitespace."""
    q = "'"
    s = ["<Event xmlns='%s'><System>" % NS_EVENT]
    for tag, attrs, text in _system_parts(ev, q):
        if text is None:
            s.append("<%s%s/>" % (tag, _attrs(attrs, q)))
        else:
            s.append("<%s%s>%s</%s>" % (tag, _attrs(attrs, q), x_text(text), tag))
    s.append("</System>")
    if ev.data_kind == "user":
        s.append("<UserData>" + _vml_open(ev, q))
        s.extend("<%s>%s</%s>" % (k, x_text(v.replace("\n", "\r\n")), k) for k, v in ev.data)
        s.append("</VmlEventLog></UserData>")
    elif ev.data_kind == "event":
        s.append("<EventData%s>" % (_attrs([("Name", ev.data_attr_name)], q) if ev.data_attr_name else ""))
        s.extend("<Data Name='%s'>%s</Data>" % (k, x_text(v.replace("\n", "\r\n"))) for k, v in ev.data)
        if ev.binary is not None:
            s.append("<Binary>%s</Binary>" % ev.binary)
        s.append("</EventData>")
    if rendering:
        kw = "".join("<Keyword>%s</Keyword>" % k for k in ev.keyword_names)
        s.append("<RenderingInfo Culture='en-US'><Message>%s</Message><Level>%s</Level><Task>%s</Task>"
                 "<Opcode>Info</Opcode><Channel>%s</Channel><Provider>%s</Provider><Keywords>%s</Keywords>"
                 "</RenderingInfo>" % (x_text(ev.crlf_message), ev.level_name, x_text(ev.task_name or ""),
                                       x_text(ev.channel), x_text(ev.provider), kw))
    s.append("</Event>")
    return "".join(s)


def event_xml_pretty_rendered(ev) -> list:
    """Pretty XML plus a RenderingInfo block (what a script writing ToXml() output nicely gives)."""
    lines = event_xml_pretty(ev)[:-1]
    lines.append('  <RenderingInfo Culture="en-US">')
    lines.extend(("    <Message>%s</Message>" % x_text(ev.message)).split("\n"))
    lines.append("    <Level>%s</Level>" % ev.level_name)
    lines.append("    <Task>%s</Task>" % x_text(ev.task_name or "") if ev.task_name else "    <Task />")
    lines.append("    <Opcode>Info</Opcode>")
    lines.append("    <Channel>%s</Channel>" % ev.channel)
    lines.append("    <Provider>%s</Provider>" % ev.provider)
    if ev.keyword_names:
        lines.append("    <Keywords>")
        lines.extend("      <Keyword>%s</Keyword>" % k for k in ev.keyword_names)
        lines.append("    </Keywords>")
    else:
        lines.append("    <Keywords />")
    lines.append("  </RenderingInfo>")
    lines.append("</Event>")
    return lines


def viewer_user(ev) -> str:
    if ev.user_vm:
        return "NT VIRTUAL MACHINE\\" + ev.user_vm
    if ev.user_sid in WELL_KNOWN:
        return WELL_KNOWN[ev.user_sid][1]
    return "N/A" if ev.user_sid is None else ev.user_sid


def viewer_block(ev, off_h, clock="24", with_xml=False) -> list:
    """Event Viewer 'Copy details as text': keys padded so values start in column 16."""
    t = local(ev, off_h)
    date = us_date_24(t) if clock == "24" else us_date_12(t)
    p = lambda k: k.ljust(15)
    lines = [
        p("Log Name:") + ev.channel,
        p("Source:") + ev.provider,
        p("Date:") + date,
        p("Event ID:") + str(ev.event_id),
        p("Task Category:") + (ev.task_name or "None"),
        p("Level:") + ev.level_name,
        p("Keywords:") + " ".join(ev.keyword_names),
        p("User:") + viewer_user(ev),
        p("Computer:") + ev.host,
        "Description:",
    ]
    lines.extend(ev.message.split("\n"))
    if with_xml:
        lines.append("Event Xml:")
        lines.extend(event_xml_pretty(ev))
    return lines


# --------------------------------------------------------------------------
# PowerShell 5.1 Export-Csv / ConvertTo-Json (formats.md (c))
# --------------------------------------------------------------------------

PS_CSV_HEADER = ["Message", "Id", "Version", "Qualifiers", "Level", "Task", "Opcode", "Keywords", "RecordId",
                 "ProviderName", "ProviderId", "LogName", "ProcessId", "ThreadId", "MachineName", "UserId",
                 "TimeCreated", "ActivityId", "RelatedActivityId", "ContainerLog", "MatchedQueryIds", "Bookmark",
                 "LevelDisplayName", "OpcodeDisplayName", "TaskDisplayName", "KeywordsDisplayNames", "Properties"]


def signed64(k: int) -> int:
    return k - (1 << 64) if k >= (1 << 63) else k


def dotnet_guid(g: Optional[str]) -> Optional[str]:
    return g.strip("{}").lower() if g else None


def n_properties(ev) -> int:
    return len(ev.data) + (1 if ev.binary is not None and ev.data_kind == "event" else 0)


def ps_csv(events, off_h, type_line, clock="12") -> str:
    def q(v):
        return '"' + str(v).replace('"', '""') + '"'
    rows = []
    if type_line:
        rows.append("#TYPE System.Diagnostics.Eventing.Reader.EventLogRecord")
    rows.append(",".join(q(h) for h in PS_CSV_HEADER))
    for ev in events:
        vals = [ev.crlf_message, ev.event_id, ev.version,
                "" if ev.qualifiers is None else ev.qualifiers, ev.level, ev.task, ev.opcode,
                signed64(ev.keywords), ev.record_id, ev.provider, dotnet_guid(ev.guid) or "", ev.channel,
                ev.pid, ev.tid, ev.host, ev.user_sid or "",
                (us_date_12 if clock == "12" else us_date_24)(local(ev, off_h)),
                dotnet_guid(ev.activity_id) or "", "", ev.channel, "System.Int32[]",
                "System.Diagnostics.Eventing.Reader.EventBookmark", ev.level_name, "Info", ev.task_name or "",
                "System.Collections.ObjectModel.ReadOnlyCollection`1[System.String]",
                "System.Collections.Generic.List`1[System.Diagnostics.Eventing.Reader.EventProperty]"]
        rows.append(",".join(q(v) for v in vals))
    return "\r\n".join(rows) + "\r\n"


class PsDate(str):
    """Marker: rendered as "\\/Date(ms)\\/" exactly as Windows PowerShell 5.1 writes it."""


def ps51_string(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or ch in "<>&'":       # JavaScriptSerializer escapes these
            out.append("\\u%04x" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def ps51_dump(v, col: int) -> str:
    """Windows PowerShell 5.1 ConvertTo-Json layout: 'key':  value, containers aligned to the bracket."""
    nl = "\r\n"
    if isinstance(v, PsDate):
        return '"\\/Date(%s)\\/"' % v
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return ps51_string(v)
    if isinstance(v, dict):
        if not v:
            return "{" + nl + nl + " " * col + "}"
        items = []
        for k, val in v.items():
            head = " " * (col + 4) + ps51_string(k) + ":  "
            items.append(head + ps51_dump(val, len(head)))
        return "{" + nl + ("," + nl).join(items) + nl + " " * col + "}"
    if isinstance(v, list):
        if not v:
            return "[" + nl + nl + " " * col + "]"
        items = [" " * (col + 4) + ps51_dump(x, col + 4) for x in v]
        return "[" + nl + ("," + nl).join(items) + nl + " " * col + "]"
    raise TypeError(type(v))


def ps_json_object(ev) -> dict:
    user = None
    if ev.user_sid:
        user = {"BinaryLength": 8 + 4 * (len(ev.user_sid.split("-")) - 3), "AccountDomainSid": None,
                "Value": ev.user_sid}
    return {
        "Message": ev.crlf_message,
        "Id": ev.event_id,
        "Version": ev.version,
        "Qualifiers": ev.qualifiers,
        "Level": ev.level,
        "Task": ev.task,
        "Opcode": ev.opcode,
        "Keywords": signed64(ev.keywords),
        "RecordId": ev.record_id,
        "ProviderName": ev.provider,
        "ProviderId": dotnet_guid(ev.guid),
        "LogName": ev.channel,
        "ProcessId": ev.pid,
        "ThreadId": ev.tid,
        "MachineName": ev.host,
        "UserId": user,
        "TimeCreated": PsDate(str(epoch_ms(ev))),
        "ActivityId": dotnet_guid(ev.activity_id),
        "RelatedActivityId": None,
        "ContainerLog": ev.channel,
        "MatchedQueryIds": [],
        "Bookmark": {},
        "LevelDisplayName": ev.level_name,
        "OpcodeDisplayName": "Info",
        "TaskDisplayName": ev.task_name,
        "KeywordsDisplayNames": list(ev.keyword_names),
        "Properties": ["System.Diagnostics.Eventing.Reader.EventProperty"] * n_properties(ev),
    }


def ps_json(events) -> str:
    return ps51_dump([ps_json_object(ev) for ev in events], 0) + "\r\n"


# --------------------------------------------------------------------------
# Shippers: Winlogbeat ECS, NXLog to_json, syslog 5424/3164, Snare (formats.md (f), ingest.md 3.1/3.2)
# --------------------------------------------------------------------------

def _account(ev):
    if ev.user_vm:
        return ("NT VIRTUAL MACHINE", ev.user_vm, "User")
    if ev.user_sid in WELL_KNOWN:
        d, n = WELL_KNOWN[ev.user_sid]
        return (d, n, "Well Known Group")
    return None


def ecs_line(ev, beat_version, event_id_as_string, host_name, created_delay_ms=1150) -> str:
    winlog = {
        "api": "wineventlog",
        "channel": ev.channel,
        "computer_name": ev.host,
        "event_id": str(ev.event_id) if event_id_as_string else ev.event_id,
        "opcode": "Info",
        "process": {"pid": ev.pid, "thread": {"id": ev.tid}},
        "provider_name": ev.provider,
        "record_id": ev.record_id,
    }
    if ev.guid:
        winlog["provider_guid"] = ev.guid
    if ev.keyword_names:
        winlog["keywords"] = list(ev.keyword_names)
    if ev.task_name:
        winlog["task"] = ev.task_name
    if ev.activity_id:
        winlog["activity_id"] = ev.activity_id
    acct = _account(ev)
    if ev.user_sid:
        u = {"identifier": ev.user_sid}
        if acct:
            u.update({"domain": acct[0], "name": acct[1], "type": acct[2]})
        winlog["user"] = u
    if ev.data_kind == "user":
        ud = {"xml_name": "VmlEventLog"}
        ud.update({k: v.replace("\n", "\r\n") for k, v in ev.data})
        winlog["user_data"] = ud
    elif ev.data_kind == "event":
        ed = {k: v.replace("\n", "\r\n") for k, v in ev.data}
        if ev.binary is not None:
            ed["Binary"] = ev.binary
        winlog["event_data"] = ed
    doc = {
        "@timestamp": iso_ms_z(ev),
        "agent": {"name": host_name, "type": "winlogbeat", "version": beat_version},
        "ecs": {"version": "1.12.0" if beat_version.startswith("7") else "8.0.0"},
        "event": {"code": str(ev.event_id), "created": iso_ms_z(ev, created_delay_ms), "kind": "event",
                  "provider": ev.provider},
        "host": {"name": host_name},
        "log": {"level": ev.level_name.lower()},
        "message": ev.crlf_message,
        "winlog": winlog,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


NX_TYPE = {1: "CRITICAL", 2: "ERROR", 3: "WARNING", 4: "INFO", 0: "INFO"}
NX_SEV_VALUE = {1: 5, 2: 4, 3: 3, 4: 2, 0: 2}


def nxlog_line(ev, off_h) -> str:
    t = local(ev, off_h)
    d = {
        "EventTime": t.strftime("%Y-%m-%d %H:%M:%S"),
        "Hostname": ev.host,
        "Keywords": signed64(ev.keywords),
        "EventType": NX_TYPE[ev.level],
        "SeverityValue": NX_SEV_VALUE[ev.level],
        "Severity": NX_TYPE[ev.level],
        "EventID": ev.event_id,
        "SourceName": ev.provider,
    }
    if ev.guid:
        d["ProviderGuid"] = "{" + ev.guid.strip("{}").upper() + "}"
    d.update({"Version": ev.version, "Task": ev.task, "OpcodeValue": ev.opcode, "RecordNumber": ev.record_id})
    if ev.activity_id:
        d["ActivityID"] = ev.activity_id
    d.update({"ProcessID": ev.pid, "ThreadID": ev.tid, "Channel": ev.channel})
    acct = _account(ev)
    if ev.user_sid and acct:
        d.update({"Domain": acct[0], "AccountName": acct[1], "UserID": ev.user_sid,
                  "AccountType": "User" if acct[2] == "Well Known Group" else acct[2]})
    d.update({"Message": ev.crlf_message, "Category": ev.task_name or "None", "Opcode": "Info"})
    for k, v in ev.data:
        d[k] = v.replace("\n", "\r\n")
    d.update({"EventReceivedTime": (t + dt.timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S"),
              "SourceModuleName": "eventlog", "SourceModuleType": "im_msvistalog"})
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False)


SYSLOG_SEV = {1: 2, 2: 3, 3: 4, 4: 6, 0: 6}   # facility user (1): PRI = 8 + severity


def one_line(msg: str) -> str:
    """Shippers put one event on one line: line breaks become a space."""
    return msg.replace("\n", " ")


def app_name(provider: str) -> str:
    return provider.replace(" ", "_")


def syslog5424_line(ev, ts_off_h=0) -> str:
    t = ev.t + dt.timedelta(hours=ts_off_h)
    ts = t.strftime("%Y-%m-%dT%H:%M:%S") + ".%06d" % (ev.frac7 // 10) + (
        "+00:00" if ts_off_h == 0 else offset_str(ts_off_h))
    sd = '[win@32473 EventID="%d" Channel="%s" RecordNumber="%d"]' % (ev.event_id, ev.channel, ev.record_id)
    return "<%d>1 %s %s %s - %d %s %s" % (8 + SYSLOG_SEV[ev.level], ts, ev.host, app_name(ev.provider),
                                          ev.event_id, sd, one_line(ev.message))


def bsd_ts(t) -> str:
    return "%s %2d %02d:%02d:%02d" % (MONTHS[t.month - 1], t.day, t.hour, t.minute, t.second)


def syslog3164_nxlog_line(ev, off_h) -> str:
    """NXLog to_syslog_bsd(): <PRI>Mmm dd hh:mm:ss HOST SourceName[pid]: Message (no event id)."""
    t = local(ev, off_h)
    return "<%d>%s %s %s[%d]: %s" % (8 + SYSLOG_SEV[ev.level], bsd_ts(t), ev.host, app_name(ev.provider),
                                     ev.pid, one_line(ev.message))


SNARE_CRIT = {1: 4, 2: 3, 3: 2, 4: 1, 0: 1}


def snare_fields(ev, off_h, counter) -> list:
    t = local(ev, off_h)
    when = "%s %s %02d %02d:%02d:%02d %d" % (DAYS[t.weekday()], MONTHS[t.month - 1], t.day, t.hour, t.minute,
                                             t.second, t.year)
    acct = _account(ev)
    user, sidtype = ("N/A", "N/A") if not ev.user_sid else ((acct[1], "User") if acct else (ev.user_sid, "User"))
    msg = ev.crlf_message
    for ch in "\r\n\t":
        msg = msg.replace(ch, " ")
    return ["MSWinEventLog", str(SNARE_CRIT[ev.level]), ev.channel, str(ev.record_id), when, str(ev.event_id),
            ev.provider, user, sidtype, ev.level_name, ev.host, ev.task_name or "None", "", msg, str(counter)]


def snare_line(ev, off_h, counter) -> str:
    """Snare over TCP without a syslog header: HOST<TAB>MSWinEventLog<TAB>..."""
    return "\t".join([ev.short_host] + snare_fields(ev, off_h, counter))


def snare_line_with_header(ev, off_h, counter) -> str:
    """Snare with its RFC 3164 header: <PRI>Mmm dd hh:mm:ss HOST MSWinEventLog<TAB>..."""
    t = local(ev, off_h)
    return "<%d>%s %s %s" % (8 + SYSLOG_SEV[ev.level], bsd_ts(t), ev.short_host,
                             "\t".join(snare_fields(ev, off_h, counter)))


# --------------------------------------------------------------------------
# Failover cluster log (formats.md (d)) and migration metrics
# --------------------------------------------------------------------------

@dataclass
class ClLine:
    t: dt.datetime     # naive UTC
    ms: int
    pid: int
    tid: int
    level: str         # INFO / WARN / ERR / DBG
    text: str          # "[RCM] ..."


def cluster_log(node, node_id, build, off_h, lines) -> str:
    off_min = -off_h * 60
    head = [
        "[=== Cluster ===]",
        "Build Number %d" % build,
        "UTC = localtime + time zone offset;the time zone offset of this machine is %d minutes, or %d hours"
        % (off_min, off_min // 60),
        "Current node: name (%s) id (%d)" % (node, node_id),
        "",
        "[=== Cluster Logs ===]",
    ]
    body = []
    for ln in sorted(lines, key=lambda x: (x.t, x.ms)):
        body.append("%08x.%08x::%s.%03d %s%s" % (ln.pid, ln.tid, ln.t.strftime("%Y/%m/%d-%H:%M:%S"), ln.ms,
                                                 ln.level.ljust(6), ln.text))
    return "\r\n".join(head + body) + "\r\n"


def metric_line(ts, migration_id, vm_name, vm_id, src, dst, phase, pass_no, bytes_sent, dirty_pages,
                throughput, blackout_ms, total_ms, transport, outcome) -> str:
    d = {
        "timestamp": ts,
        "migration_id": migration_id,
        "vm_name": vm_name,
        "vm_id": vm_id,
        "source_host": src,
        "destination_host": dst,
        "phase": phase,
        "pass": pass_no,
        "bytes_sent": bytes_sent,
        "dirty_pages": dirty_pages,
        "throughput_mbps": throughput,
        "blackout_ms": blackout_ms,
        "total_ms": total_ms,
        "transport": transport,
        "outcome": outcome,
    }
    return json.dumps(d, separators=(",", ":"))


def precopy_metrics(rng, start, migration_id, vm_name, vm_id, src, dst, mem_gib, gbps, transport, blackout_ms):
    """Pre-copy passes with falling dirty pages, one blackout, one completed. Returns (lines, total_ms, end)."""
    page = 4096
    pages_total = mem_gib * 1024 * 1024 * 1024 // page
    lines = []

    def ts(t):
        return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (t.microsecond // 1000)

    t = start
    lines.append(metric_line(ts(t), migration_id, vm_name, vm_id, src, dst, "started", 0, 0, pages_total,
                             0.0, None, None, transport, None))
    t += dt.timedelta(milliseconds=rng.randint(900, 1400))        # setup: config transfer, reservation
    to_send = pages_total
    sent = 0
    pass_no = 0
    while True:
        pass_no += 1
        mbps = round(gbps * 1000 * rng.uniform(0.86, 0.94), 1)
        secs = to_send * page * 8 / (mbps * 1e6)
        t += dt.timedelta(seconds=secs)
        sent += to_send * page
        dirty = int(to_send * rng.uniform(0.09, 0.16)) if pass_no == 1 else int(to_send * rng.uniform(0.12, 0.2))
        lines.append(metric_line(ts(t), migration_id, vm_name, vm_id, src, dst, "precopy", pass_no, sent, dirty,
                                 mbps, None, None, transport, None))
        to_send = dirty
        if to_send < 2048:
            break
    pass_no += 1
    t += dt.timedelta(milliseconds=blackout_ms)
    sent += to_send * page
    lines.append(metric_line(ts(t), migration_id, vm_name, vm_id, src, dst, "blackout", pass_no, sent, to_send,
                             round(to_send * page * 8 / (blackout_ms / 1000) / 1e6, 1), blackout_ms, None,
                             transport, None))
    t += dt.timedelta(milliseconds=rng.randint(150, 260))
    total_ms = int(round((t - start).total_seconds() * 1000))
    avg = round(sent * 8 / ((t - start).total_seconds() * 1e6), 1)
    lines.append(metric_line(ts(t), migration_id, vm_name, vm_id, src, dst, "completed", pass_no, sent, 0,
                             avg, blackout_ms, total_ms, transport, "success"))
    return lines, total_ms, t


# --------------------------------------------------------------------------
# Event constructors shared by the scenarios
# --------------------------------------------------------------------------

def scm_7036(host, t, frac7, display, key, running, pid, tid):
    state = "running" if running else "stopped"
    binary = (key + "/" + ("4" if running else "1")).encode("utf-16-le").hex().upper() + "0000"
    return Ev(host, "System", "Service Control Manager", 7036, 4, t, frac7,
              "The %s service entered the %s state." % (display, state), pid=pid, tid=tid, user_sid=None,
              data_kind="event", data=[("param1", display), ("param2", state)], binary=binary, qualifiers=16384,
              keywords=0x8080000000000000, keyword_names=["Classic"])


def kernel_general_16(host, t, frac7, hive, keys, pages, pid, tid):
    return Ev(host, "System", "Microsoft-Windows-Kernel-General", 16, 4, t, frac7,
              "The access history in hive %s was cleared updating %d keys and creating %d modified pages."
              % (hive, keys, pages), pid=pid, tid=tid, data_kind="event",
              data=[("HiveNameLength", str(len(hive))), ("HiveName", hive), ("KeysUpdated", str(keys)),
                    ("DirtyPages", str(pages))])


def time_37(host, t, frac7, source, pid, tid):
    return Ev(host, "System", "Microsoft-Windows-Time-Service", 37, 4, t, frac7,
              "The time provider NtpClient is currently receiving valid time data from %s." % source,
              pid=pid, tid=tid, user_sid="S-1-5-19", data_kind="event",
              data_attr_name="TMP_EVENT_TIME_SOURCE_REACHABLE", data=[("TimeSource", source)])


def time_134(host, t, frac7, peer, retry, pid, tid):
    err = "No such host is known. (0x80072AF9)"
    return Ev(host, "System", "Microsoft-Windows-Time-Service", 134, 3, t, frac7,
              "NtpClient was unable to set a manual peer to use as a time source because of DNS resolution error "
              "on '%s'. NtpClient will try again in %d minutes and double the reattempt interval thereafter. "
              "The error was: %s" % (peer, retry, err), pid=pid, tid=tid, user_sid="S-1-5-19",
              data_kind="event", data_attr_name="TMP_EVENT_MANUAL_PEER_DNS_ERROR",
              data=[("ErrorMessage", err), ("RetryMinutes", str(retry)), ("DomainPeer", peer)])


def dns_1014(host, t, frac7, name, server_ip, pid, tid):
    a = [int(x) for x in server_ip.split(".")]
    address = ("0200" + "0000" + "".join("%02X" % x for x in a)).ljust(256, "0")
    return Ev(host, "System", "Microsoft-Windows-DNS-Client", 1014, 3, t, frac7,
              "Name resolution for the name %s timed out after none of the configured DNS servers responded."
              % name, pid=pid, tid=tid, user_sid="S-1-5-20", data_kind="event",
              data=[("QueryName", name), ("AddressLength", "128"), ("Address", address)],
              task=1014, task_name="(1014)", keywords=0x4000000010000000)


WORKER_TEXT = {
    18500: "'%s' started successfully. (Virtual machine ID %s)",
    18502: "'%s' was turned off. (Virtual machine ID %s)",
    18508: "'%s' was shut down by the guest operating system. (Virtual machine ID %s)",
    18512: "'%s' was reset using Hyper-V Manager. (Virtual machine ID %s)",
}
VMMS_TEXT = {
    13002: "A new virtual machine '%s' was created. (Virtual machine ID %s)",
    18303: "'%s' was successfully exported. (Virtual machine ID %s)",
    18304: "A new virtual machine '%s' was created. (Virtual machine ID %s)",
}


def worker_event(host, t, frac7, eid, vm_name, vm_id, pid, tid):
    return Ev(host, "Microsoft-Windows-Hyper-V-Worker-Admin", "Microsoft-Windows-Hyper-V-Worker", eid, 4, t, frac7,
              WORKER_TEXT[eid] % (vm_name, vm_id), pid=pid, tid=tid, user_sid=vm_sid(vm_id), user_vm=vm_id,
              data_kind="user", data=[("VmName", vm_name), ("VmId", vm_id)])


def vmms_event(host, t, frac7, eid, vm_name, vm_id, pid, tid):
    return Ev(host, "Microsoft-Windows-Hyper-V-VMMS-Admin", "Microsoft-Windows-Hyper-V-VMMS", eid, 4, t, frac7,
              VMMS_TEXT[eid] % (vm_name, vm_id), pid=pid, tid=tid, data_kind="user",
              data=[("VmName", vm_name), ("VmId", vm_id)])


def vmms_20415(host, t, frac7, vm_name, vm_id, blackout, pid, tid):
    return Ev(host, "Microsoft-Windows-Hyper-V-VMMS-Admin", "Microsoft-Windows-Hyper-V-VMMS", 20415, 4, t, frac7,
              "The Virtual Machine Management service successfully completed the live migration of virtual "
              "machine  '%s' with a blackout time of %s seconds (VMID %s)." % (vm_name, blackout, vm_id),
              pid=pid, tid=tid, data_kind="user", auto_ns2=True,
              data=[("Parameter0", vm_name), ("Parameter1", vm_id), ("Parameter2", blackout)])


HA_CHANNEL = "Microsoft-Windows-Hyper-V-High-Availability-Admin"
HA_PROVIDER = "Microsoft-Windows-Hyper-V-High-Availability"


def ha_progress(host, t, frac7, eid, vm_name, vm_id, seconds, pid, tid):
    res = "Virtual Machine " + vm_name
    if eid == 21300:
        msg, data = "Started live migration on the source node (VM resource '%s', VMID %s)." % (res, vm_id), \
            [("VmId", vm_id), ("ResourceName", res)]
    elif eid == 21306:
        msg, data = "Started live migration on the target node (VM resource '%s', VMID %s)." % (res, vm_id), \
            [("VmId", vm_id), ("ResourceName", res)]
    elif eid == 21301:
        msg, data = ("Completed live migration on the source node, time %s s (VM resource '%s', VMID %s)."
                     % (seconds, res, vm_id)), [("VmId", vm_id), ("Time", seconds), ("ResourceName", res)]
    elif eid == 21307:
        msg, data = ("Completed live migration on the target node, time %s s (VM resource '%s', VMID %s)."
                     % (seconds, res, vm_id)), [("VmId", vm_id), ("Time", seconds), ("ResourceName", res)]
    else:
        raise ValueError(eid)
    return Ev(host, HA_CHANNEL, HA_PROVIDER, eid, 4, t, frac7, msg, pid=pid, tid=tid, data_kind="event", data=data)


def fc_1673(host, t, frac7, vm_name, src, dst, pid, tid):
    res = "Virtual Machine " + vm_name
    return Ev(host, "System", "Microsoft-Windows-FailoverClustering", 1673, 4, t, frac7,
              "Resource '%s' moved from group '%s' on node '%s' to group '%s' on node '%s'."
              % (res, vm_name, src, vm_name, dst), pid=pid, tid=tid, data_kind="event",
              data=[("ResourceName", res), ("SourceGroupName", vm_name), ("SourceNodeName", src),
                    ("TargetGroupName", vm_name), ("TargetNodeName", dst)])


def fc_1808(host, t, frac7, pid, tid):
    return Ev(host, "System", "Microsoft-Windows-FailoverClustering", 1808, 4, t, frac7,
              "The cluster load balancer has identified the current node is exceeding the CPU or memory usage "
              "threshold.  Virtual Machines will be moved to a new node to balance the cluster.",
              pid=pid, tid=tid, data_kind="event", data=[])


# --------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------

def write(path, text, encoding="utf-8"):
    """Write text exactly: no newline translation. encoding 'utf-16' = UTF-16LE with BOM."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if encoding == "utf-16":
        data = b"\xff\xfe" + text.encode("utf-16-le")
    else:
        data = text.encode(encoding)
    with open(path, "wb") as f:
        f.write(data)


def rand_guid(rng) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()


# ==========================================================================
# Scenario C: background-day-4node
# ==========================================================================

OFF_C = -7                       # PDT: local = UTC - 7 h
DAY_C = dt.datetime(2020, 6, 16)  # local date
DOMAIN_C = "contoso.local"
NODES_C = ["HV01", "HV02", "HV03", "HV04"]

VMS_C = {
    "HV01": ["DC01", "WEB01", "WEB02", "APP01", "PRINT01", "RDS01"],
    "HV02": ["DC02", "SQL01", "SQL02", "FS02", "MON01", "JUMP01"],
    "HV03": ["FS01", "EXCH01", "EXCH02", "WSUS01", "CA01", "BUILD01"],
    "HV04": ["TEST01", "TEST02", "DEV01", "DEV02", "LAB01", "ADFS01"],
}

SERVICES = [
    ("Windows Update", "wuauserv", (4, 25)),
    ("Windows Modules Installer", "TrustedInstaller", (3, 20)),
    ("Background Intelligent Transfer Service", "BITS", (2, 12)),
    ("WinHTTP Web Proxy Auto-Discovery Service", "WinHttpAutoProxySvc", (1, 30)),
    ("Software Protection", "sppsvc", (1, 2)),
    ("Windows Error Reporting Service", "WerSvc", (1, 5)),
    ("Device Setup Manager", "DsmSvc", (2, 6)),
    ("Volume Shadow Copy", "VSS", (3, 4)),
    ("Microsoft Software Shadow Copy Provider", "swprv", (3, 4)),
    ("Update Orchestrator Service", "UsoSvc", (5, 30)),
    ("Network Setup Service", "NetSetupSvc", (1, 3)),
    ("Application Information", "Appinfo", (10, 40)),
    ("Microsoft Storage Spaces SMP", "smphost", (1, 3)),
    ("Diagnostic System Host", "WdiSystemHost", (2, 8)),
]

HIVES = [
    ("\\??\\C:\\Windows\\ServiceProfiles\\NetworkService\\NTUSER.DAT", (0, 4), (0, 2)),
    ("\\??\\C:\\Windows\\ServiceProfiles\\LocalService\\NTUSER.DAT", (0, 6), (0, 3)),
    ("\\??\\C:\\Windows\\system32\\config\\systemprofile\\AppData\\Local\\Microsoft\\Windows\\UsrClass.dat",
     (0, 12), (0, 4)),
    ("\\SystemRoot\\System32\\Config\\SOFTWARE", (120, 2400), (30, 900)),
]


def c_time(rng, h, m, s):
    """Local wall time of the day -> (UTC datetime, frac7)."""
    t = DAY_C + dt.timedelta(hours=h, minutes=m, seconds=s) - dt.timedelta(hours=OFF_C)
    return t, rng.randrange(10 ** 7)


def c_build():
    rng = random.Random(20200616)
    fq = {n: "%s.%s" % (n, DOMAIN_C) for n in NODES_C}
    node_id = {n: i + 1 for i, n in enumerate(NODES_C)}
    vm_ids = {vm: rand_guid(rng) for n in NODES_C for vm in VMS_C[n]}
    for extra in ("LAB02", "LAB03"):
        vm_ids[extra] = rand_guid(rng)
    pids = {n: {"services": rng.randrange(560, 720, 4), "system": 4, "w32time": rng.randrange(1200, 1600, 4),
                "dnscache": rng.randrange(1300, 1700, 4), "vmms": rng.randrange(2400, 4200, 4),
                "clussvc": rng.randrange(2000, 3000, 4), "rhs": rng.randrange(3000, 5000, 4)} for n in NODES_C}
    vmwp = {vm: rng.randrange(5000, 12000, 4) for vm in vm_ids}
    tid = lambda: rng.randrange(200, 12000, 4)
    events = []
    cl = {n: [] for n in NODES_C}

    # --- System: Service Control Manager 7036 pairs -----------------------------------
    for n in NODES_C:
        for _ in range(88):
            display, key, (lo, hi) = SERVICES[rng.randrange(len(SERVICES))]
            start_s = rng.randrange(0, 86400 - 3700)
            t0, f0 = c_time(rng, 0, 0, start_s)
            t1, f1 = c_time(rng, 0, 0, start_s + rng.randint(lo * 60, hi * 60) if hi > 2 else start_s + rng.randint(20, 120))
            events.append(scm_7036(fq[n], t0, f0, display, key, True, pids[n]["services"], tid()))
            events.append(scm_7036(fq[n], t1, f1, display, key, False, pids[n]["services"], tid()))
    # --- System: Kernel-General 16 roughly hourly -------------------------------------
    for n in NODES_C:
        for h in range(24):
            if rng.random() < 0.2:
                continue
            hive, (klo, khi), (plo, phi) = HIVES[rng.randrange(len(HIVES))]
            t, f = c_time(rng, h, rng.randrange(60), rng.randrange(60))
            events.append(kernel_general_16(fq[n], t, f, hive, rng.randint(klo, khi), rng.randint(plo, phi),
                                            pids[n]["system"] if "SOFTWARE" in hive else rng.randrange(900, 1200, 4),
                                            tid()))
    # --- System: time service ----------------------------------------------------------
    for n in NODES_C:
        if n == "HV03":
            continue
        t, f = c_time(rng, 6, rng.randrange(60), rng.randrange(60))
        events.append(time_37(fq[n], t, f, "dc01.contoso.local (ntp.d|10.20.0.%d:123->10.20.0.11:123)"
                              % (20 + node_id[n]), pids[n]["w32time"], tid()))
    for i, (h, m, retry) in enumerate([(6, 4, 15), (6, 19, 30), (6, 49, 60)]):
        t, f = c_time(rng, h, m, rng.randrange(60))
        events.append(time_134(fq["HV03"], t, f, "ntp.contoso.local,0x8", retry, pids["HV03"]["w32time"], tid()))
    t, f = c_time(rng, 7, 52, 11)
    events.append(time_37(fq["HV03"], t, f, "dc01.contoso.local (ntp.d|10.20.0.23:123->10.20.0.11:123)",
                          pids["HV03"]["w32time"], tid()))
    # --- System: DNS client warnings (not a migration problem) ---------------------------
    for h, m in [(9, 2), (13, 47)]:
        t, f = c_time(rng, h, m, rng.randrange(60))
        events.append(dns_1014(fq["HV04"], t, f, "wpad.contoso.local", "10.20.0.11", pids["HV04"]["dnscache"], tid()))

    # --- Hyper-V Worker-Admin: VM lifecycle ---------------------------------------------
    def wk(node, h, m, s, eid, vm):
        t, f = c_time(rng, h, m, s)
        events.append(worker_event(fq[node], t, f, eid, vm, vm_ids[vm], vmwp[vm], tid()))

    # Each churned VM starts the day running; a cycle is a guest shutdown (18508) or a turn-off (18502)
    # followed by a start (18500, new vmwp.exe), or a reset (18512). Cycles never overlap.
    churn = {
        "HV01": [("RDS01", 2), ("PRINT01", 1), ("APP01", 2)],
        "HV02": [("JUMP01", 2), ("FS02", 1), ("SQL02", 1)],
        "HV03": [("WSUS01", 3), ("BUILD01", 5), ("CA01", 1)],
        "HV04": [("TEST01", 6), ("TEST02", 5), ("DEV01", 4), ("DEV02", 3), ("LAB01", 4)],
    }
    for n in NODES_C:
        for vm, cycles in churn[n]:
            slot = 86400 // (cycles + 1)
            for c in range(cycles):
                base = slot * c + rng.randrange(600, slot - 3600)
                kind = rng.choice([18508, 18508, 18502, 18512])
                wk(n, 0, 0, base, kind, vm)
                if kind != 18512:
                    vmwp[vm] = rng.randrange(5000, 12000, 4)
                    wk(n, 0, 0, base + rng.randrange(45, 1800), 18500, vm)
    wk("HV02", 22, 15, 9, 18502, "MON01")           # MON01 stays off at the end of the day
    wk("HV04", 23, 40, 1, 18502, "LAB01")           # so does LAB01
    # --- Hyper-V VMMS-Admin: created / exported -------------------------------------------
    for h, m, s, eid, vm in [(11, 30, 17, 18303, "DEV02"), (14, 5, 41, 13002, "LAB02"), (14, 40, 2, 18304, "LAB03")]:
        t, f = c_time(rng, h, m, s)
        events.append(vmms_event(fq["HV04"], t, f, eid, vm, vm_ids[vm], pids["HV04"]["vmms"], tid()))
    wk("HV04", 14, 9, 12, 18500, "LAB02")

    # --- Two successful live migrations -------------------------------------------------
    metrics = []
    migrations = [
        # vm, src, dst, local start (h, m, s), mem GiB, link Gb/s, transport, blackout ms, balancer?
        ("WEB02", "HV01", "HV02", (10, 14, 3), 8, 10, "compress", 300, True),
        ("FS01", "HV03", "HV04", (16, 41, 20), 12, 10, "smb", 400, False),
    ]
    for vm, src, dst, (h, m, s), mem, gbps, transport, blackout, balancer in migrations:
        vid = vm_ids[vm]
        t0, f0 = c_time(rng, h, m, s)
        start = t0 + dt.timedelta(microseconds=f0 // 10)
        mig_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        mlines, total_ms, end = precopy_metrics(rng, start, mig_id, vm, vid, src, dst, mem, gbps, transport,
                                                blackout)
        metrics.extend(mlines)

        def at(base, ms):
            x = base + dt.timedelta(milliseconds=ms, microseconds=rng.randrange(1000))
            return x.replace(microsecond=0), x.microsecond * 10 + rng.randrange(10)

        clussvc_s, clussvc_d = pids[src]["clussvc"], pids[dst]["clussvc"]
        rhs_s, rhs_d = pids[src]["rhs"], pids[dst]["rhs"]
        rcm_tid = tid()
        if balancer:
            tb, fb = at(start, -4400)
            events.append(fc_1808(fq[src], tb, fb, clussvc_s, tid()))
            cl[src].append(ClLine(tb, fb // 10000, clussvc_s, rcm_tid, "INFO",
                                  "[RCM] Load balancer: node %s exceeds the memory threshold, moving group '%s' to node %d."
                                  % (src, vm, node_id[dst])))
        ta, fa = at(start, -150)
        cl[src].append(ClLine(ta, fa // 10000, clussvc_s, rcm_tid, "INFO",
                              "[RCM] rcm::RcmApi::MoveGroup: (%s, %d)" % (vm, node_id[dst])))
        cl[src].append(ClLine(ta, fa // 10000 + 1 if fa // 10000 < 999 else 999, clussvc_s, rcm_tid, "INFO",
                              "[RCM] rcm::RcmGroup::Move: Live migrating group '%s' to node %s (%d)."
                              % (vm, dst, node_id[dst])))
        t1, f1 = at(start, 180)
        events.append(ha_progress(fq[src], t1, f1, 21300, vm, vid, None, rhs_s, tid()))
        cl[src].append(ClLine(t1, f1 // 10000, rhs_s, tid(), "INFO",
                              "[RES] Virtual Machine <Virtual Machine %s>: Live migration to node %s started."
                              % (vm, dst)))
        t2, f2 = at(start, 420)
        events.append(ha_progress(fq[dst], t2, f2, 21306, vm, vid, None, rhs_d, tid()))
        cl[dst].append(ClLine(t2, f2 // 10000, rhs_d, tid(), "INFO",
                              "[RES] Virtual Machine <Virtual Machine %s>: Incoming live migration from node %s."
                              % (vm, src)))
        dur = total_ms
        t3, f3 = at(start, dur - 60)
        events.append(ha_progress(fq[dst], t3, f3, 21307, vm, vid, "%.1f" % ((dur - 480) / 1000), rhs_d, tid()))
        t4, f4 = at(start, dur - 20)
        events.append(vmms_20415(fq[src], t4, f4, vm, vid, "%.1f" % (blackout / 1000), pids[src]["vmms"], tid()))
        t5, f5 = at(start, dur + 15)
        events.append(ha_progress(fq[src], t5, f5, 21301, vm, vid, "%.1f" % ((dur - 180) / 1000), rhs_s, tid()))
        cl[src].append(ClLine(t5, f5 // 10000, rhs_s, tid(), "INFO",
                              "[RES] Virtual Machine <Virtual Machine %s>: Live migration to node %s completed."
                              % (vm, dst)))
        t6, f6 = at(start, dur + 90)
        cl[dst].append(ClLine(t6, f6 // 10000, clussvc_d, tid(), "INFO",
                              "[RCM] TransitionToState(%s) MigratingIn-->Online." % vm))
        cl[src].append(ClLine(t6, f6 // 10000, clussvc_s, rcm_tid, "INFO",
                              "[RCM] rcm::RcmGroup::Move: Group '%s' is now owned by node %s (%d)."
                              % (vm, dst, node_id[dst])))
        t7, f7 = at(start, dur + 140)
        events.append(fc_1673(fq[dst], t7, f7, vm, src, dst, clussvc_d, tid()))

    # --- cluster.log background lines -------------------------------------------------
    gum = rng.randrange(20000, 30000)
    for n in NODES_C:
        for h in range(24):
            for _ in range(2):
                t, f = c_time(rng, h, rng.randrange(60), rng.randrange(60))
                gum += rng.randrange(1, 40)
                c = rng.random()
                if c < 0.45:
                    text = "[GUM] Node %d: executing request locally, gumId:%d, my action: /dm/update, # of updates: 1" \
                        % (node_id[n], gum)
                elif c < 0.8:
                    peer = NODES_C[(node_id[n] + rng.randrange(3)) % 4]
                    text = "[NM] Received request from client address %s." % peer
                else:
                    text = "[API] s_ApiGetQuorumResource final status 0."
                cl[n].append(ClLine(t, f // 10000, pids[n]["clussvc"], tid(), "DBG" if "API" in text else "INFO",
                                    text))

    bases = {}
    for n in NODES_C:
        bases[(n, "System")] = rng.randrange(40000, 90000)
        bases[(n, "Microsoft-Windows-Hyper-V-VMMS-Admin")] = rng.randrange(1500, 6000)
        bases[(n, "Microsoft-Windows-Hyper-V-Worker-Admin")] = rng.randrange(2000, 9000)
        bases[(n, HA_CHANNEL)] = rng.randrange(150, 900)
    assign_record_ids(events, bases)
    return events, cl, node_id, metrics


def c_write(root):
    events, cl, node_id, metrics = c_build()
    per = {n: by_time([e for e in events if e.short_host == n]) for n in NODES_C}
    sysl = lambda n: [e for e in per[n] if e.channel == "System"]
    hv = lambda n: [e for e in per[n] if e.channel != "System"]
    counts = {}

    def put(rel, text, n_events, encoding="utf-8"):
        write(os.path.join(root, rel), text, encoding)
        counts[rel] = n_events

    # HV01: Winlogbeat 8.x ECS (Hyper-V channels) + NXLog BSD syslog (System)
    put("HV01/winlogbeat-HV01.ndjson",
        "".join(ecs_line(e, "8.8.2", True, "hv01") + "\n" for e in hv("HV01")), len(hv("HV01")))
    put("HV01/syslog-rfc3164-System-HV01.log",
        "".join(syslog3164_nxlog_line(e, OFF_C) + "\n" for e in sysl("HV01")), len(sysl("HV01")))
    # HV02: Get-WinEvent | Export-Csv -NoTypeInformation (Hyper-V) + wevtutil /f:RenderedXml (System)
    put("HV02/Get-WinEvent-HyperV-HV02.csv", ps_csv(hv("HV02"), OFF_C, type_line=False), len(hv("HV02")))
    put("HV02/wevtutil-System-HV02.xml",
        "".join(event_xml_compact(e) + "\r\n" for e in sysl("HV02")), len(sysl("HV02")))
    # HV03: Get-WinEvent | ConvertTo-Json (Hyper-V) + Snare tab-delimited (System)
    put("HV03/Get-WinEvent-HyperV-HV03.json", ps_json(hv("HV03")), len(hv("HV03")))
    put("HV03/snare-System-HV03.log",
        "".join(snare_line(e, OFF_C, i + 1) + "\n" for i, e in enumerate(sysl("HV03"))), len(sysl("HV03")))
    # HV04: NXLog to_json (Hyper-V) + RFC 5424 (System, local offset in the timestamp)
    put("HV04/nxlog-HyperV-HV04.json", "".join(nxlog_line(e, OFF_C) + "\n" for e in hv("HV04")), len(hv("HV04")))
    put("HV04/syslog-rfc5424-System-HV04.log",
        "".join(syslog5424_line(e, OFF_C) + "\n" for e in sysl("HV04")), len(sysl("HV04")))
    for n in NODES_C:
        put("%s/%s_cluster.log" % (n, n), cluster_log(n, node_id[n], 17763, OFF_C, cl[n]), len(cl[n]),
            encoding="utf-16")
    put("cluster/migration-metrics.jsonl", "".join(m + "\n" for m in metrics), len(metrics))
    put("expected.json", "[]\n", 0)     # a healthy day: a correct correlator finds no incident
    return counts


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    for rel, n in sorted(c_write(here).items()):
        print("%-42s %5d records" % (rel, n))
