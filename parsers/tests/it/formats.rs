//! One behaviour per test, per format, on minimal fixtures written the way
//! Windows and the shippers write them (formats.md, ingest.md captures).

use parsers::{Format, Level, LocalZone, ParseOptions, Phase};

use crate::{one, parse_str, utf16le_bom};

const VM: &str = "4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7";

fn opts_zone(zone: &str) -> ParseOptions {
    ParseOptions {
        local_zone: zone.parse::<LocalZone>().unwrap(),
        year: Some(2026),
        ..ParseOptions::default()
    }
}

// ---- Event Viewer text ----------------------------------------------------

const RS_20415_TEXT: &str = "Log Name:      Microsoft-Windows-Hyper-V-VMMS-Admin
Source:        Microsoft-Windows-Hyper-V-VMMS
Date:          11/21/2017 4:57:53 AM
Event ID:      20415
Task Category: None
Level:         Information
Keywords:      
User:          SYSTEM
Computer:      773330-hyp1.MPC1495823.local
Description:
The Virtual Machine Management service successfully completed the live migration of virtual machine  '773356-USTSTDB5' with a blackout time of 0.5 seconds (VMID E0D09432-A320-44CC-8A12-E1300549B99D).
Event Xml:
<Event xmlns=\"http://schemas.microsoft.com/win/2004/08/events/event\">
  <System>
    <Provider Name=\"Microsoft-Windows-Hyper-V-VMMS\" Guid=\"{6066F867-7CA1-4418-85FD-36E3F9C0600C}\" />
    <EventID>20415</EventID>
    <Level>4</Level>
    <TimeCreated SystemTime=\"2017-11-21T10:57:53.874847300Z\" />
    <EventRecordID>52262</EventRecordID>
    <Channel>Microsoft-Windows-Hyper-V-VMMS-Admin</Channel>
    <Computer>773330-hyp1.MPC1495823.local</Computer>
    <Security UserID=\"S-1-5-18\" />
  </System>
  <UserData>
    <VmlEventLog xmlns=\"http://www.microsoft.com/Windows/Virtualization/Events\">
      <Parameter0>773356-USTSTDB5</Parameter0>
      <Parameter1>E0D09432-A320-44CC-8A12-E1300549B99D</Parameter1>
      <Parameter2>0.5</Parameter2>
    </VmlEventLog>
  </UserData>
</Event>
";

#[test]
fn viewer_text_with_xml_tail_takes_utc_from_the_xml() {
    let e = one(RS_20415_TEXT);
    assert_eq!(e.event_id, 20415);
    assert_eq!(e.record_id, Some(52262));
    assert_eq!(
        e.timestamp.to_rfc3339(),
        "2017-11-21T10:57:53.874847300+00:00"
    );
    assert!(!e.zone_assumed);
    assert_eq!(e.vm_name.as_deref(), Some("773356-USTSTDB5"));
    assert_eq!(
        e.vm_id.as_deref(),
        Some("E0D09432-A320-44CC-8A12-E1300549B99D")
    );
    assert!(e
        .message
        .starts_with("The Virtual Machine Management service"));
    assert_eq!(e.origin.format, Some(Format::ViewerText));
}

#[test]
fn viewer_text_twelve_hour_clock_in_a_configured_zone() {
    let text = RS_20415_TEXT.split("Event Xml:").next().unwrap();
    let out = parsers::parse_bytes(text.as_bytes(), &opts_zone("-06:00"));
    let e = &out.events[0];
    // 4:57:53 AM at UTC-6 is 10:57:53 UTC: the XML part above agrees.
    assert_eq!(e.timestamp.to_rfc3339(), "2017-11-21T10:57:53+00:00");
    assert!(e.zone_assumed);
    assert_eq!(e.record_id, None);
}

#[test]
fn viewer_text_bad_block_is_reported_and_the_next_still_parses() {
    let text = "Log Name:      System
Source:        X
Date:          not a date
Event ID:      1
Level:         Error
Computer:      H
Description:
first

Log Name:      System
Source:        Microsoft-Windows-Hyper-V-High-Availability
Date:          9/27/2018 15:36:44
Event ID:      21502
Level:         Error
Computer:      NODE-B
Description:
Live migration of 'Virtual Machine ADFS1' failed.
";
    let out = parse_str(text);
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].event_id, 21502);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].line, Some(1));
    assert_eq!(out.errors[0].offset, 0);
    assert!(
        out.errors[0].to_string().contains("Date"),
        "{}",
        out.errors[0]
    );
}

#[test]
fn wevtutil_text_blocks() {
    let text = "Event[0]:
  Log Name: Microsoft-Windows-Hyper-V-Worker-Admin
  Source: Microsoft-Windows-Hyper-V-Worker
  Date: 2018-09-27T15:36:44.123
  Event ID: 18500
  Task: N/A
  Level: Information
  Opcode: Info
  Keyword: N/A
  User: S-1-5-83-1-3655396106-1351506743-3915871121-3476744365
  User Name: NT VIRTUAL MACHINE\\D9E0EB0A-5B37-508E-9173-67E9ADE83ACF
  Computer: HV01.contoso.local
  Description: 
'SQL01' started successfully. (Virtual machine ID D9E0EB0A-5B37-508E-9173-67E9ADE83ACF)

Event[1]:
  Log Name: System
  Source: Service Control Manager
  Date: 2018-09-27T15:36:45.000
  Event ID: 7036
  Task: N/A
  Level: Information
  Computer: HV01.contoso.local
  Description: 
The Spooler service entered the running state.
";
    let out = parse_str(text);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.events.len(), 2);
    assert_eq!(out.events[0].event_id, 18500);
    assert_eq!(out.events[0].vm_name.as_deref(), Some("SQL01"));
    assert_eq!(
        out.events[0].vm_id.as_deref(),
        Some("D9E0EB0A-5B37-508E-9173-67E9ADE83ACF")
    );
    assert_eq!(out.events[1].channel, "System");
}

// ---- Event XML -----------------------------------------------------------

fn xml_event(id: u32, record: u64, body: &str) -> String {
    format!(
        "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><Provider Name='Microsoft-Windows-Hyper-V-VMMS'/><EventID>{id}</EventID><Level>2</Level><TimeCreated SystemTime='2018-09-27T13:36:44.5120000Z'/><EventRecordID>{record}</EventRecordID><Channel>Microsoft-Windows-Hyper-V-VMMS-Admin</Channel><Computer>NODE-B.datawisetech.corp</Computer></System>{body}</Event>"
    )
}

#[test]
fn xml_fragments_back_to_back_without_a_root() {
    let body = format!("<UserData><VmlEventLog xmlns='http://www.microsoft.com/Windows/Virtualization/Events'><VmName>ADFS1</VmName><VmId>{}</VmId></VmlEventLog></UserData>", VM.to_lowercase());
    let text = format!(
        "{}{}{}",
        xml_event(21066, 1, &body),
        xml_event(21024, 2, &body),
        xml_event(21502, 3, "")
    );
    let out = parse_str(&text);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(
        out.events.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        [21066, 21024, 21502]
    );
    assert_eq!(
        out.events[0].vm_id.as_deref(),
        Some(VM),
        "GUID case is normalized"
    );
    assert_eq!(out.events[0].level, Level::Error);
    let second = text.find("<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><Provider Name='Microsoft-Windows-Hyper-V-VMMS'/><EventID>21024").unwrap();
    assert_eq!(out.events[1].origin.offset, second as u64);
}

#[test]
fn xml_broken_event_in_the_middle_is_skipped_with_its_offset() {
    let good = xml_event(1, 1, "");
    let broken = "<Event><System><EventID>2</EventID></Sys></Event>";
    let text = format!(
        "<?xml version='1.0'?>\n<Events>\n{good}\n{broken}\n{}\n</Events>\n",
        xml_event(3, 3, "")
    );
    let out = parse_str(&text);
    assert_eq!(
        out.events.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        [1, 3]
    );
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].offset, text.find(broken).unwrap() as u64);
}

#[test]
fn xml_truncated_at_the_end_is_reported() {
    let text = format!("{}<Event><System><EventID>2</EventID>", xml_event(1, 1, ""));
    let out = parse_str(&text);
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.errors.len(), 1);
    assert!(out.errors[0].to_string().contains("truncated"));
}

#[test]
fn xml_in_utf16_has_offsets_in_the_utf16_bytes() {
    let text = format!("{}\r\n{}\r\n", xml_event(1, 1, ""), xml_event(2, 2, ""));
    let bytes = utf16le_bom(&text);
    let out = parsers::parse_bytes(&bytes, &ParseOptions::default());
    assert_eq!(out.events.len(), 2);
    assert_eq!(out.events[0].origin.offset, 2);
    let second = 2 + 2 * (xml_event(1, 1, "").encode_utf16().count() + 2);
    assert_eq!(out.events[1].origin.offset, second as u64);
}

#[test]
fn xml_rendering_info_carries_the_message() {
    let body = "<EventData><Data Name='VmName'>ADFS1</Data><Data Name='ErrorCode'>0x80070002</Data></EventData><RenderingInfo Culture='en-US'><Message>Failed to verify collection registry for virtual machine 'ADFS1'.</Message><Level>Error</Level></RenderingInfo>";
    let e = one(&xml_event(21066, 9, body));
    assert_eq!(
        e.message,
        "Failed to verify collection registry for virtual machine 'ADFS1'."
    );
    assert_eq!(e.hresult.as_deref(), Some("0x80070002"));
    assert_eq!(e.vm_name.as_deref(), Some("ADFS1"));
}

// ---- PowerShell CSV and JSON --------------------------------------------

#[test]
fn export_csv_with_type_line_and_multiline_message() {
    let text = "#TYPE System.Diagnostics.Eventing.Reader.EventLogRecord\r
\"Message\",\"Id\",\"Version\",\"Qualifiers\",\"Level\",\"Task\",\"Opcode\",\"Keywords\",\"RecordId\",\"ProviderName\",\"ProviderId\",\"LogName\",\"ProcessId\",\"ThreadId\",\"MachineName\",\"UserId\",\"TimeCreated\",\"ActivityId\",\"RelatedActivityId\",\"ContainerLog\",\"MatchedQueryIds\",\"Bookmark\",\"LevelDisplayName\",\"OpcodeDisplayName\",\"TaskDisplayName\",\"KeywordsDisplayNames\",\"Properties\"\r
\"Live migration of 'Virtual Machine ADFS1' failed.\r
Virtual machine migration operation for 'ADFS1' failed at migration source 'NODE-B'. (Virtual machine ID 4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7)\",\"21502\",\"0\",,\"2\",\"0\",\"0\",\"-9223372036854775808\",\"9911\",\"Microsoft-Windows-Hyper-V-High-Availability\",\"\",\"System\",\"2060\",\"4112\",\"NODE-B.datawisetech.corp\",\"S-1-5-18\",\"9/27/2018 3:36:44 PM\",,,\"System\",\"System.UInt32[]\",\"System.Diagnostics.Eventing.Reader.EventBookmark\",\"Error\",\"Info\",,\"System.Collections.ObjectModel.ReadOnlyCollection`1[System.String]\",\"System.Collections.Generic.List`1[System.Diagnostics.Eventing.Reader.EventProperty]\"\r
";
    let out = parsers::parse_bytes(text.as_bytes(), &opts_zone("+02:00"));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let e = &out.events[0];
    assert_eq!(e.event_id, 21502);
    assert_eq!(e.record_id, Some(9911));
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.timestamp.to_rfc3339(), "2018-09-27T13:36:44+00:00");
    assert!(e.zone_assumed);
    assert_eq!(e.vm_id.as_deref(), Some(VM));
    assert_eq!(e.message.lines().count(), 2);
    assert_eq!(e.origin.format, Some(Format::PsCsv));
}

#[test]
fn export_csv_semicolon_use_culture() {
    let text = "\"Message\";\"Id\";\"Level\";\"RecordId\";\"ProviderName\";\"LogName\";\"MachineName\";\"TimeCreated\"\n\"x\";\"7036\";\"4\";\"5\";\"Service Control Manager\";\"System\";\"HV01\";\"27.09.2018 15:36:44\"\n\"y\";\"not-a-number\";\"4\";\"6\";\"S\";\"System\";\"HV01\";\"27.09.2018 15:36:45\"\n";
    let out = parse_str(text);
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].event_id, 7036);
    assert_eq!(
        out.events[0].timestamp.to_rfc3339(),
        "2018-09-27T15:36:44+00:00"
    );
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].line, Some(3));
}

#[test]
fn convertto_json_powershell_51_array() {
    let text = r#"[
    {
        "Id":  13,
        "Version":  0,
        "Qualifiers":  null,
        "Level":  4,
        "RecordId":  2555,
        "ProviderName":  "Microsoft-Windows-Hyper-V-Netvsc",
        "LogName":  "System",
        "MachineName":  "DESKTOP-U3FCUKI",
        "UserId":  null,
        "TimeCreated":  "\/Date(1595374458918)\/",
        "Message":  "Nic /DEVICE/{x} is now operational.",
        "Properties":  [ "System.Diagnostics.Eventing.Reader.EventProperty" ]
    },
    {
        "Id":  21502,
        "Level":  2,
        "RecordId":  9911,
        "ProviderName":  "Microsoft-Windows-Hyper-V-High-Availability",
        "LogName":  "System",
        "MachineName":  "NODE-B",
        "TimeCreated":  { "value": "\/Date(1538055404000)\/", "DateTime": "Thursday, September 27, 2018 3:36:44 PM" },
        "Message":  "Live migration of 'Virtual Machine ADFS1' failed."
    },
    { "Id": "oops" }
]"#;
    let out = parse_str(text);
    assert_eq!(out.events.len(), 2, "{:?}", out.errors);
    assert_eq!(
        out.events[0].timestamp.to_rfc3339(),
        "2020-07-21T23:34:18.918+00:00"
    );
    assert!(!out.events[0].zone_assumed);
    assert_eq!(
        out.events[1].timestamp.to_rfc3339(),
        "2018-09-27T13:36:44+00:00"
    );
    assert_eq!(out.events[1].vm_name.as_deref(), Some("ADFS1"));
    assert_eq!(out.errors.len(), 1);
    assert!(
        out.errors[0].to_string().contains("element 2"),
        "{}",
        out.errors[0]
    );
}

#[test]
fn convertto_json_powershell_7_single_object() {
    let text = "{\n  \"Id\": 20415,\n  \"Level\": 4,\n  \"ProviderName\": \"Microsoft-Windows-Hyper-V-VMMS\",\n  \"LogName\": \"Microsoft-Windows-Hyper-V-VMMS-Admin\",\n  \"MachineName\": \"NODE-C\",\n  \"TimeCreated\": \"2026-08-03T18:34:56.1234567Z\",\n  \"Message\": \"done\"\n}\n";
    let e = one(text);
    assert_eq!(
        e.timestamp.to_rfc3339(),
        "2026-08-03T18:34:56.123456700+00:00"
    );
    assert_eq!(e.origin.format, Some(Format::PsJson));
}

// ---- JSON lines ------------------------------------------------------------

#[test]
fn winlogbeat_nested_and_flat_dotted_keys_are_the_same_event() {
    let nested = r#"{"@timestamp":"2018-09-27T13:36:44.512Z","host":{"name":"node-b"},"winlog":{"computer_name":"NODE-B.datawisetech.corp","channel":"Microsoft-Windows-Hyper-V-VMMS-Admin","provider_name":"Microsoft-Windows-Hyper-V-VMMS","event_id":21066,"record_id":88123,"user_data":{"VmName":"ADFS1","VmId":"4b5f2f6c-aea3-4c7b-8342-e255d1d112d7"}},"log":{"level":"error"},"message":"Failed (0x80070002)."}"#;
    let flat = r#"{"@timestamp":"2018-09-27T13:36:44.512Z","host.name":"node-b","winlog.computer_name":"NODE-B.datawisetech.corp","winlog.channel":"Microsoft-Windows-Hyper-V-VMMS-Admin","winlog.provider_name":"Microsoft-Windows-Hyper-V-VMMS","winlog.event_id":"21066","winlog.record_id":88123,"winlog.user_data.VmName":"ADFS1","winlog.user_data.VmId":"4b5f2f6c-aea3-4c7b-8342-e255d1d112d7","log.level":"error","message":"Failed (0x80070002)."}"#;
    let a = one(nested);
    let mut b = one(flat);
    b.origin = a.origin.clone();
    assert_eq!(a, b);
    assert_eq!(a.host, "NODE-B.datawisetech.corp");
    assert_eq!(a.vm_id.as_deref(), Some(VM));
    assert_eq!(a.hresult.as_deref(), Some("0x80070002"));
    assert_eq!(a.origin.format, Some(Format::EcsJson));
}

#[test]
fn json_lines_mixed_with_a_bad_line_and_blank_lines() {
    let text = "{\"@timestamp\":\"2018-09-27T13:36:44Z\",\"winlog\":{\"event_id\":1}}\n\n{not json}\n{\"@timestamp\":\"2018-09-27T13:36:45Z\",\"winlog\":{\"event_id\":2}}\n{\"winlog\":{\"event_id\":3}}\n";
    let out = parse_str(text);
    assert_eq!(out.events.len(), 2);
    assert_eq!(
        out.errors.iter().map(|e| e.line).collect::<Vec<_>>(),
        [Some(3), Some(5)]
    );
    assert!(out.errors[1].to_string().contains("@timestamp"));
}

#[test]
fn evtx_dump_jsonl_records() {
    let line = r##"{"Event":{"#attributes":{"xmlns":"http://schemas.microsoft.com/win/2004/08/events/event"},"System":{"Provider":{"#attributes":{"Name":"Service Control Manager","Guid":"{555908d1-a6d7-4695-8e1e-26931d2012f4}"}},"EventID":{"#attributes":{"Qualifiers":16384},"#text":7036},"Version":0,"Level":4,"TimeCreated":{"#attributes":{"SystemTime":"2023-10-18T05:43:41.864318Z"}},"EventRecordID":32,"Channel":"System","Computer":"WIN-FUDU2CKJOE8","Security":null},"EventData":{"param1":"PlugPlay","param2":"running","Binary":"50006C00"}}}"##;
    let e = one(line);
    assert_eq!(e.event_id, 7036);
    assert_eq!(e.provider, "Service Control Manager");
    assert_eq!(e.record_id, Some(32));
    assert_eq!(e.host, "WIN-FUDU2CKJOE8");
    assert_eq!(e.data.get("param1"), Some("PlugPlay"));
}

#[test]
fn nxlog_to_json_line_in_local_time() {
    let line = r#"{"EventTime":"2018-09-27 15:36:45","Hostname":"NODE-A.datawisetech.corp","Keywords":-9223372036854775808,"EventType":"ERROR","SeverityValue":4,"Severity":"ERROR","EventID":21066,"SourceName":"Microsoft-Windows-Hyper-V-VMMS","ProviderGuid":"{6066F867-7CA1-4418-85FD-36E3F9C0600C}","Version":0,"Task":0,"OpcodeValue":0,"RecordNumber":4411,"ProcessID":2364,"ThreadID":3312,"Channel":"Microsoft-Windows-Hyper-V-VMMS-Admin","Message":"Failed to verify collection registry for virtual machine 'ADFS1': The system cannot find the file specified. (0x80070002). (Virtual Machine ID 4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7).","VmName":"ADFS1","EventReceivedTime":"2018-09-27 15:36:46","SourceModuleName":"eventlog","SourceModuleType":"im_msvistalog"}"#;
    let out = parsers::parse_bytes(line.as_bytes(), &opts_zone("+02:00"));
    let e = &out.events[0];
    assert_eq!(e.timestamp.to_rfc3339(), "2018-09-27T13:36:45+00:00");
    assert!(e.zone_assumed);
    assert_eq!(e.record_id, Some(4411));
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.data.get("VmName"), Some("ADFS1"));
    assert_eq!(e.data.get("SourceModuleName"), None);
    assert_eq!(e.origin.format, Some(Format::NxlogJson));
}

#[test]
fn metrics_json_lines() {
    let text = "{\"timestamp\":\"2019-01-15T14:20:01.5Z\",\"migration_id\":\"m-1\",\"vm_name\":\"SQL01\",\"source_host\":\"NODE-C\",\"destination_host\":\"NODE-D\",\"phase\":\"precopy\",\"pass\":2,\"bytes_sent\":4294967296,\"dirty_pages\":1200,\"throughput_mbps\":9400.5,\"blackout_ms\":null,\"total_ms\":null,\"transport\":\"tcp\",\"outcome\":null}\n{\"timestamp\":\"2019-01-15T14:20:21Z\",\"migration_id\":\"m-1\",\"phase\":\"completed\",\"blackout_ms\":500,\"total_ms\":19700,\"outcome\":\"success\"}\n";
    let out = parse_str(text);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.metrics.len(), 2);
    assert_eq!(out.metrics[0].phase, Phase::Precopy);
    assert_eq!(out.metrics[0].pass, Some(2));
    assert_eq!(out.metrics[0].bytes_sent, Some(4_294_967_296));
    assert_eq!(out.metrics[1].blackout_ms, Some(500));
    assert_eq!(out.metrics[1].outcome, Some(parsers::Outcome::Success));
}

// ---- OTLP ------------------------------------------------------------------

#[test]
fn otlp_json_from_the_javascript_exporter() {
    // Captured from @opentelemetry/exporter-logs-otlp-http 0.223.1 (ingest.md §3.3).
    let line = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"relive-agent"}},{"key":"host.name","value":{"stringValue":"NODE-B"}}],"droppedAttributesCount":0},"scopeLogs":[{"scope":{"name":"Microsoft-Windows-Hyper-V-VMMS-Admin"},"logRecords":[{"timeUnixNano":"1795375050860000000","observedTimeUnixNano":"1795375050860000000","severityNumber":17,"severityText":"Error","body":{"stringValue":"Failed to receive data for a Virtual Machine migration: An existing connection was forcibly closed by the remote host. (0x80072746)."},"attributes":[{"key":"winlog.event_id","value":{"intValue":21066}},{"key":"winlog.channel","value":{"stringValue":"Microsoft-Windows-Hyper-V-VMMS-Admin"}},{"key":"winlog.record_id","value":{"intValue":88123}}],"droppedAttributesCount":0}]}]}]}"#;
    let e = one(line);
    assert_eq!(e.event_id, 21066);
    assert_eq!(e.host, "NODE-B");
    assert_eq!(e.record_id, Some(88123));
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.hresult.as_deref(), Some("0x80072746"));
    assert_eq!(e.timestamp.timestamp(), 1_795_375_050);
    assert_eq!(e.origin.format, Some(Format::OtlpJson));
}

#[test]
fn otlp_windowseventlog_body_map_and_raw_xml_pretty_document() {
    let text = format!(
        r#"{{
  "resourceLogs": [{{
    "resource": {{"attributes": []}},
    "scopeLogs": [{{
      "scope": {{}},
      "logRecords": [
        {{"timeUnixNano": "0", "observedTimeUnixNano": "1538055404512000000", "severityNumber": 17,
          "body": {{"kvlistValue": {{"values": [
            {{"key": "event_id", "value": {{"kvlistValue": {{"values": [{{"key": "id", "value": {{"intValue": "21502"}}}}, {{"key": "qualifiers", "value": {{"intValue": "0"}}}}]}}}}}},
            {{"key": "provider", "value": {{"kvlistValue": {{"values": [{{"key": "name", "value": {{"stringValue": "Microsoft-Windows-Hyper-V-High-Availability"}}}}]}}}}}},
            {{"key": "system_time", "value": {{"stringValue": "2018-09-27T13:36:44.5120000Z"}}}},
            {{"key": "computer", "value": {{"stringValue": "NODE-B.datawisetech.corp"}}}},
            {{"key": "channel", "value": {{"stringValue": "System"}}}},
            {{"key": "record_id", "value": {{"intValue": "9911"}}}},
            {{"key": "level", "value": {{"stringValue": "Error"}}}},
            {{"key": "message", "value": {{"stringValue": "Live migration of 'Virtual Machine ADFS1' failed."}}}},
            {{"key": "event_data", "value": {{"kvlistValue": {{"values": [{{"key": "VmId", "value": {{"stringValue": "{VM}"}}}}]}}}}}}
          ]}}}}
        }},
        {{"timeUnixNano": "1538055404512000000", "body": {{"stringValue": "{}"}}}}
      ]
    }}]
  }}]
}}
"#,
        xml_event(21066, 5, "").replace('\'', "\\\"")
    );
    let out = parse_str(&text);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.events.len(), 2);
    let e = &out.events[0];
    assert_eq!(
        (e.event_id, e.record_id, e.channel.as_str()),
        (21502, Some(9911), "System")
    );
    assert_eq!(e.timestamp.to_rfc3339(), "2018-09-27T13:36:44.512+00:00");
    assert_eq!(e.vm_id.as_deref(), Some(VM));
    assert_eq!(e.vm_name.as_deref(), Some("ADFS1"));
    assert_eq!(out.events[1].event_id, 21066);
    assert_eq!(out.events[1].record_id, Some(5));
}

// ---- Syslog and Snare --------------------------------------------------------

#[test]
fn logger_octet_counted_frames_run_together_on_one_line() {
    // `logger --rfc5424 --octet-count` sends no LF between frames (ingest.md §3.3 #1).
    let frame = "<11>1 2026-11-22T19:15:25.630737+00:00 vm Hyper-V-VMMS 4242 - [timeQuality tzKnown=\"1\" isSynced=\"0\"][win@32473 EventID=\"21502\" Channel=\"Microsoft-Windows-Hyper-V-VMMS-Admin\"] Live migration of VM01 failed.";
    let text = format!("{} {frame}{} {frame}", frame.len(), frame.len());
    let out = parse_str(&text);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.events.len(), 2);
    assert_eq!(out.events[1].origin.offset, (frame.len() + 4) as u64);
    assert!(out
        .events
        .iter()
        .all(|e| e.event_id == 21502 && e.host == "vm"));
    assert_eq!(out.events[0].origin.format, Some(Format::Syslog));
}

#[test]
fn rsyslog_octet_counted_with_the_lf_inside_the_count() {
    // rsyslog omfwd RSYSLOG_SyslogProtocol23Format (ingest.md §3.3 #2).
    let a = "<11>1 2026-11-22T19:16:18.360378+00:00 vm Hyper-V-VMMS - 21502 [timeQuality tzKnown=\"1\" isSynced=\"0\"] Virtual machine migration operation for VM01 failed at migration source NODE-A. (Virtual machine ID 4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7)\n";
    let b = "<11>1 2026-11-22T19:16:18.361871+00:00 vm Hyper-V-VMMS - 21066 [timeQuality tzKnown=\"1\" isSynced=\"0\"] Failed to receive data for a Virtual Machine migration: An existing connection was forcibly closed by the remote host. (0x80072746).\n";
    assert_eq!((a.len(), b.len()), (240, 235));
    let text = format!("{} {a}{} {b}", a.len(), b.len());
    let out = parse_str(&text);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(
        out.events.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        [21502, 21066]
    );
    assert_eq!(out.events[0].vm_id.as_deref(), Some(VM));
    assert_eq!(out.events[1].hresult.as_deref(), Some("0x80072746"));
    assert!(!out.events[0].message.ends_with('\n'));
}

#[test]
fn syslog_ng_loggen_bom_and_rfc3164_lines() {
    let text = "120 <38>1 2026-11-22T19:18:47+00:00 localhost prg00000 1234 - - \u{FEFF}seq: 0000000000, thread: 0000, runid: 1795375127, stamp: 2026-11-22T19:18:47 PADDPADDPADDPADD\n<12>Nov 22 19:15:26 vm vmms: Event 21502 VM01\n<13>Nov 27 09:58:51 propc12 MSWinEventLog\t4\tSystem\t2174\tFri Nov 27 09:58:51 2015\t7036\tService Control Manager\tN/A\tN/A\tInformation\tpropc12\tNone\t\tThe Application Experience service entered the stopped state.\t0\n<99>garbage\n";
    let first = text.lines().next().unwrap();
    let count: usize = first.split(' ').next().unwrap().parse().unwrap();
    let text = text.replacen(first, &format!("{} {}", first.len() - 4, &first[4..]), 1);
    assert!(count > 0);
    let out = parsers::parse_bytes(text.as_bytes(), &opts_zone("UTC"));
    assert_eq!(out.events.len(), 3, "{:?}", out.errors);
    assert!(out.events[0].message.starts_with("seq:"), "BOM is stripped");
    assert_eq!(out.events[1].event_id, 21502);
    assert_eq!(out.events[2].event_id, 7036);
    assert_eq!(out.events[2].host, "propc12");
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].line, Some(4));
}

#[test]
fn snare_tab_delimited_file() {
    let text = "NODE-B\tMSWinEventLog\t1\tSystem\t77\tThu Sep 27 15:36:44 2018\t21502\tMicrosoft-Windows-Hyper-V-High-Availability\tN/A\tN/A\tError\tNODE-B.datawisetech.corp\tNone\t\tLive migration of 'Virtual Machine ADFS1' failed.\t77\n";
    let out = parsers::parse_bytes(text.as_bytes(), &opts_zone("+02:00"));
    let e = &out.events[0];
    assert_eq!(e.event_id, 21502);
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.host, "NODE-B.datawisetech.corp");
    assert_eq!(e.timestamp.to_rfc3339(), "2018-09-27T13:36:44+00:00");
    assert_eq!(e.vm_name.as_deref(), Some("ADFS1"));
    assert_eq!(e.origin.format, Some(Format::Snare));
}

// ---- cluster.log ---------------------------------------------------------------

const CLUSTER_LOG: &str = "[=== Cluster ===]
Build Number 17763
UTC = localtime + time zone offset;the time zone offset of this machine is -120 minutes.
Current node: name (NODE-B) id (2)
[=== Resources ===]
Name  State
[=== Cluster Logs ===]
00000b1c.00001a4c::2018/09/27-13:36:44.123 ERR   [RES] Virtual Machine <Virtual Machine ADFS1>: Live migration of 'Virtual Machine ADFS1' failed.
   continued on a second line
000011d0.00000f80::2018/09/27-13:36:44.200 INFO  [RCM] rcm::RcmApi::MoveGroup: (ADFS1, 2)
000011d0.00000f80::2018/13/27-13:36:44.200 INFO  [RCM] bad month
00002a54.0000610c::2018/09/27-13:36:45.931 WARN  [RHS] Online for resource AOCProd01AG failed.
";

#[test]
fn cluster_log_records_header_and_continuations() {
    let out = parse_str(CLUSTER_LOG);
    assert_eq!(out.events.len(), 3);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].line, Some(11));
    let e = &out.events[0];
    assert_eq!(e.host, "NODE-B");
    assert_eq!(e.channel, "cluster.log");
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.timestamp.to_rfc3339(), "2018-09-27T13:36:44.123+00:00");
    assert!(!e.zone_assumed);
    assert_eq!(e.data.get("ProcessId"), Some("00000b1c"));
    assert_eq!(e.data.get("ThreadId"), Some("00001a4c"));
    assert_eq!(e.data.get("Component"), Some("RES"));
    assert_eq!(e.data.get("ResourceType"), Some("Virtual Machine"));
    assert_eq!(e.data.get("Resource"), Some("Virtual Machine ADFS1"));
    assert_eq!(e.vm_name.as_deref(), Some("ADFS1"));
    assert!(e.message.ends_with("continued on a second line"));
    assert_eq!(out.events[2].level, Level::Warning);
    assert_eq!(
        e.origin.offset,
        CLUSTER_LOG.find("00000b1c").unwrap() as u64
    );
}

#[test]
fn cluster_log_in_local_time_and_utf16() {
    let text = CLUSTER_LOG.replace(
        "Current node:",
        "The logs were generated using local time\nCurrent node:",
    );
    let out = parsers::parse_bytes(&utf16le_bom(&text), &ParseOptions::default());
    assert_eq!(out.events.len(), 3);
    // Local 13:36 with an offset of -120 minutes is 11:36 UTC.
    assert_eq!(
        out.events[0].timestamp.to_rfc3339(),
        "2018-09-27T11:36:44.123+00:00"
    );
    assert_eq!(out.events[0].origin.format, Some(Format::ClusterLog));
}

#[test]
fn cluster_log_host_from_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("NODE-A_cluster.log");
    std::fs::write(
        &path,
        "00000b1c.00001a4c::2018/09/27-13:36:44.123 INFO  [NM] x\n",
    )
    .unwrap();
    let out = crate::parse_file(&path, &ParseOptions::default());
    assert_eq!(out.events[0].host, "NODE-A");
}

// ---- perfmon ---------------------------------------------------------------

#[test]
fn perfmon_csv_of_live_migration_counters() {
    let text = "\"(PDH-CSV 4.0) (W. Europe Daylight Time)(-120)\",\"\\\\NODE-B\\Hyper-V VM Live Migration(ADFS1)\\TCP Transport: Bytes Sent\",\"\\\\NODE-B\\Hyper-V VM Live Migration(ADFS1)\\TCP Transport: Bytes Sent/sec\",\"\\\\NODE-B\\Memory\\Available MBytes\"\r
\"09/27/2018 15:36:40.123\",\"1048576\",\"125000000\",\"2048\"\r
\"09/27/2018 15:36:41.123\",\" \",\" \",\"2048\"\r
\"09/27/2018 15:36:42.123\",\"2097152\",\"250000000\",\"2048\"\r
";
    let out = parse_str(text);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.metrics.len(), 2);
    let m = &out.metrics[0];
    assert_eq!(m.timestamp.to_rfc3339(), "2018-09-27T13:36:40.123+00:00");
    assert_eq!(m.vm_name.as_deref(), Some("ADFS1"));
    assert_eq!(m.source_host.as_deref(), Some("NODE-B"));
    assert_eq!(m.bytes_sent, Some(1_048_576));
    assert_eq!(m.throughput_mbps, Some(1000.0));
    assert_eq!(m.phase, Phase::Sample);
}

// ---- other CSV exports -------------------------------------------------------

#[test]
fn event_viewer_save_as_csv_and_tab_text() {
    let csv = "Level,Date and Time,Source,Event ID,Task Category\r\nError,9/27/2018 3:36:44 PM,Microsoft-Windows-Hyper-V-High-Availability,21502,None,\"Live migration of 'Virtual Machine ADFS1' failed.\r\nVirtual machine migration operation for 'ADFS1' failed at migration source 'NODE-B'. (Virtual machine ID 4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7)\"\r\nInformation,9/27/2018 3:30:00 PM,Service Control Manager,7036,None,The Spooler service entered the running state.\r\n";
    let tsv = csv
        .replace(",9/", "\t9/")
        .replace(
            "Level,Date and Time,Source,Event ID,Task Category",
            "Level\tDate and Time\tSource\tEvent ID\tTask Category",
        )
        .replace(",Microsoft", "\tMicrosoft")
        .replace(",Service", "\tService")
        .replace(",21502,None,", "\t21502\tNone\t")
        .replace(",7036,None,", "\t7036\tNone\t");
    for text in [csv.to_owned(), tsv] {
        let opts = ParseOptions {
            default_host: Some("NODE-B".into()),
            ..opts_zone("+02:00")
        };
        let out = parsers::parse_bytes(text.as_bytes(), &opts);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.events.len(), 2, "{text}");
        let e = &out.events[0];
        assert_eq!(
            (e.event_id, e.level, e.host.as_str()),
            (21502, Level::Error, "NODE-B")
        );
        assert_eq!(e.provider, "Microsoft-Windows-Hyper-V-High-Availability");
        assert_eq!(e.timestamp.to_rfc3339(), "2018-09-27T13:36:44+00:00");
        assert_eq!(e.vm_id.as_deref(), Some(VM));
        assert_eq!(e.vm_name.as_deref(), Some("ADFS1"));
        assert_eq!(
            out.events[1].message,
            "The Spooler service entered the running state."
        );
    }
}

#[test]
fn evtxecmd_csv_with_payload() {
    let text = "RecordNumber,EventRecordId,TimeCreated,EventId,Level,Provider,Channel,ProcessId,ThreadId,Computer,UserId,MapDescription,UserName,RemoteHost,PayloadData1,PayloadData2,PayloadData3,PayloadData4,PayloadData5,PayloadData6,ExecutableInfo,HiddenRecord,SourceFile,Keywords,Payload\n1,4411,2023-08-02 05:47:11.0063997,18500,Info,Microsoft-Windows-Hyper-V-Worker,Microsoft-Windows-Hyper-V-Worker-Admin,1268,3476,HV01.contoso.local,S-1-5-83-1-3655396106-1351506743-3915871121-3476744365,VM started,,,'SQL01' started successfully.,,,,,,,False,C:\\\\Logs\\\\Worker.evtx,Classic,\"{\"\"UserData\"\":{\"\"VmlEventLog\"\":{\"\"@xmlns\"\":\"\"http://www.microsoft.com/Windows/Virtualization/Events\"\",\"\"VmName\"\":\"\"SQL01\"\",\"\"VmId\"\":\"\"D9E0EB0A-5B37-508E-9173-67E9ADE83ACF\"\"}}}\"\n";
    let e = one(text);
    assert_eq!(e.event_id, 18500);
    assert_eq!(e.record_id, Some(4411));
    assert_eq!(e.channel, "Microsoft-Windows-Hyper-V-Worker-Admin");
    assert_eq!(e.host, "HV01.contoso.local");
    assert_eq!(
        e.timestamp.to_rfc3339(),
        "2023-08-02T05:47:11.006399700+00:00"
    );
    assert!(!e.zone_assumed, "EvtxECmd writes UTC");
    assert_eq!(e.data.get("VmName"), Some("SQL01"));
    assert_eq!(
        e.vm_id.as_deref(),
        Some("D9E0EB0A-5B37-508E-9173-67E9ADE83ACF")
    );
    assert!(e.message.contains("'SQL01' started successfully."));
    assert_eq!(e.origin.format, Some(Format::PsCsv));
}
