"""Sends what Winlogbeat, NXLog and the OpenTelemetry collector send, with
the settings of the README's configuration blocks (already moved to
loopback ports by the test), and checks that requests without their
credentials are refused. Usage: readme_shippers.py WINLOGBEAT_YML NXLOG_CONF OTELCOL_YAML"""

import json
import re
import socket
import sys
import urllib.error
import urllib.request

import yaml

winlogbeat_yml, nxlog_conf, otelcol_yaml = sys.argv[1:4]

# Winlogbeat: output.elasticsearch with an api_key; the _bulk request the
# Elasticsearch client sends, to the index it names.
from elasticsearch import Elasticsearch, helpers, AuthenticationException

wlb = yaml.safe_load(open(winlogbeat_yml))
channels = [e["name"] for e in wlb["winlogbeat.event_logs"]]
for wanted in ("Microsoft-Windows-Hyper-V-VMMS-Admin",
               "Microsoft-Windows-Hyper-V-High-Availability-Admin",
               "Microsoft-Windows-FailoverClustering/Operational"):
    assert wanted in channels, (wanted, channels)
out = wlb["output.elasticsearch"]
key_id, key = out["api_key"].split(":", 1)
doc = {"@timestamp": "2026-11-22T19:16:18.000Z",
       "agent": {"type": "winlogbeat"},
       "winlog": {"event_id": 21502, "computer_name": "WLB-HV01.lab.example", "record_id": 1,
                  "channel": "Microsoft-Windows-Hyper-V-High-Availability-Admin",
                  "provider_name": "Microsoft-Windows-Hyper-V-High-Availability"},
       "message": "Live migration of 'Virtual Machine SQL9' failed. readmewinlogbeat"}
es = Elasticsearch(out["hosts"][0], api_key=(key_id, key))
ok, errors = helpers.bulk(es, [{"_op_type": "create", "_index": out["index"], "_source": doc}])
assert ok == 1 and not errors, (ok, errors)
try:
    helpers.bulk(Elasticsearch(out["hosts"][0]), [{"_index": out["index"], "_source": doc}])
    raise SystemExit("a _bulk request without the api_key was accepted")
except AuthenticationException:
    pass

# NXLog: the om_tcp output's Host, to_json() lines, the route joining them.
conf = open(nxlog_conf).read()
output = re.search(r"<Output relive>(.*?)</Output>", conf, re.S).group(1)
assert re.search(r"^\s*Module\s+om_tcp\s*$", output, re.M), output
assert "to_json()" in output, output
host, port = re.search(r"^\s*Host\s+(\S+):(\d+)\s*$", output, re.M).groups()
route = re.search(r"<Route [^>]+>(.*?)</Route>", conf, re.S).group(1)
inputs, outputs = re.search(r"Path\s+(\S+)\s*=>\s*(\S+)", route).groups()
assert f"<Input {inputs}>" in conf and outputs == "relive", route
line = {"EventTime": "2026-11-22 19:16:19", "Hostname": "NXLOG-HV02.lab.example",
        "EventID": 21066, "SourceName": "Microsoft-Windows-Hyper-V-VMMS",
        "Channel": "Microsoft-Windows-Hyper-V-VMMS-Admin", "Severity": "ERROR",
        "RecordNumber": 7, "EventType": "ERROR",
        "Message": "Failed to verify collection registry for virtual machine 'SQL9'. readmenxlog"}
with socket.create_connection((host, int(port))) as s:
    s.sendall((json.dumps(line) + "\n").encode())

# The OpenTelemetry collector: the otlphttp exporter's endpoint and headers.
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk.resources import Resource
import logging

otel = yaml.safe_load(open(otelcol_yaml))
pipeline = otel["service"]["pipelines"]["logs"]
assert all(r in otel["receivers"] for r in pipeline["receivers"]), pipeline
assert pipeline["exporters"] == ["otlphttp/relive"], pipeline
exporter = otel["exporters"]["otlphttp/relive"]
endpoint = exporter["endpoint"].rstrip("/") + "/v1/logs"
provider = LoggerProvider(resource=Resource.create({"host.name": "OTEL-HV03"}))
provider.add_log_record_processor(SimpleLogRecordProcessor(
    OTLPLogExporter(endpoint=endpoint, headers=exporter["headers"])))
log = logging.getLogger("Microsoft-Windows-Hyper-V-VMMS-Admin")
log.addHandler(LoggingHandler(logger_provider=provider))
log.setLevel(logging.INFO)
log.error("Failed to receive data for a Virtual Machine migration (0x80072746). readmeotel",
          extra={"winlog.event_id": 21066, "winlog.channel": "Microsoft-Windows-Hyper-V-VMMS-Admin",
                 "winlog.record_id": 31})
provider.shutdown()
try:
    urllib.request.urlopen(urllib.request.Request(
        endpoint, data=b"{}", headers={"Content-Type": "application/json"}))
    raise SystemExit("an OTLP request without the token was accepted")
except urllib.error.HTTPError as e:
    assert e.code == 401, e.code
print("sent")
