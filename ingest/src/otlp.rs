//! OTLP/HTTP logs in protobuf: the few messages of
//! `opentelemetry/proto/collector/logs/v1` relive reads, declared with the
//! field numbers of the upstream `.proto` files, and their mapping onto the
//! parsers' OTLP/JSON model (so both encodings share one normalizer).

use parsers::format::otlp_json as j;
use prost::Message;

#[derive(Clone, PartialEq, Message)]
struct ExportLogsServiceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_logs: Vec<ResourceLogs>,
}

#[derive(Clone, PartialEq, Message)]
struct ResourceLogs {
    #[prost(message, optional, tag = "1")]
    resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    scope_logs: Vec<ScopeLogs>,
}

#[derive(Clone, PartialEq, Message)]
struct Resource {
    #[prost(message, repeated, tag = "1")]
    attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
struct ScopeLogs {
    #[prost(message, optional, tag = "1")]
    scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    log_records: Vec<LogRecord>,
}

#[derive(Clone, PartialEq, Message)]
struct InstrumentationScope {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct LogRecord {
    #[prost(fixed64, tag = "1")]
    time_unix_nano: u64,
    #[prost(fixed64, tag = "11")]
    observed_time_unix_nano: u64,
    #[prost(int32, tag = "2")]
    severity_number: i32,
    #[prost(string, tag = "3")]
    severity_text: String,
    #[prost(message, optional, tag = "5")]
    body: Option<AnyValue>,
    #[prost(message, repeated, tag = "6")]
    attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
struct KeyValue {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, optional, tag = "2")]
    value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
struct AnyValue {
    #[prost(oneof = "Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Value {
    #[prost(string, tag = "1")]
    Str(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(message, tag = "5")]
    Array(ArrayValue),
    #[prost(message, tag = "6")]
    Kvlist(KeyValueList),
    #[prost(bytes, tag = "7")]
    Bytes(Vec<u8>),
}

#[derive(Clone, PartialEq, Message)]
struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    values: Vec<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    values: Vec<KeyValue>,
}

/// `ExportLogsServiceResponse`'s `partial_success`.
#[derive(Clone, PartialEq, Message)]
struct PartialSuccess {
    #[prost(int64, tag = "1")]
    rejected_log_records: i64,
    #[prost(string, tag = "2")]
    error_message: String,
}

#[derive(Clone, PartialEq, Message)]
struct ExportLogsServiceResponse {
    #[prost(message, optional, tag = "1")]
    partial_success: Option<PartialSuccess>,
}

/// Decodes a protobuf `ExportLogsServiceRequest` into the OTLP/JSON model.
pub fn decode_protobuf(bytes: &[u8]) -> Result<j::LogsRequest, prost::DecodeError> {
    let request = ExportLogsServiceRequest::decode(bytes)?;
    Ok(j::LogsRequest {
        resource_logs: request
            .resource_logs
            .into_iter()
            .map(resource_logs)
            .collect(),
    })
}

/// How many log records a protobuf request holds (0 if it does not decode).
pub fn count_protobuf(bytes: &[u8]) -> Result<usize, prost::DecodeError> {
    let request = ExportLogsServiceRequest::decode(bytes)?;
    Ok(request
        .resource_logs
        .iter()
        .flat_map(|r| r.scope_logs.iter())
        .map(|s| s.log_records.len())
        .sum())
}

/// An `ExportLogsServiceResponse`, empty or with a partial success.
pub fn encode_response(rejected: i64, message: &str) -> Vec<u8> {
    let response = ExportLogsServiceResponse {
        partial_success: (rejected > 0).then(|| PartialSuccess {
            rejected_log_records: rejected,
            error_message: message.to_string(),
        }),
    };
    response.encode_to_vec()
}

fn resource_logs(r: ResourceLogs) -> j::ResourceLogs {
    j::ResourceLogs {
        resource: r.resource.map(|res| j::Resource {
            attributes: res.attributes.into_iter().map(key_value).collect(),
        }),
        scope_logs: r
            .scope_logs
            .into_iter()
            .map(|s| j::ScopeLogs {
                scope: s.scope.map(|sc| j::Scope { name: sc.name }),
                log_records: s.log_records.into_iter().map(log_record).collect(),
            })
            .collect(),
    }
}

fn nanos(n: u64) -> Option<j::Number> {
    (n != 0).then_some(j::Number::U(n))
}

fn log_record(r: LogRecord) -> j::LogRecord {
    j::LogRecord {
        time_unix_nano: nanos(r.time_unix_nano),
        observed_time_unix_nano: nanos(r.observed_time_unix_nano),
        severity_number: (r.severity_number > 0).then_some(r.severity_number as u32),
        severity_text: (!r.severity_text.is_empty()).then_some(r.severity_text),
        body: r.body.map(any_value),
        attributes: r.attributes.into_iter().map(key_value).collect(),
    }
}

fn key_value(kv: KeyValue) -> j::KeyValue {
    j::KeyValue {
        key: kv.key,
        value: kv.value.map(any_value),
    }
}

fn any_value(v: AnyValue) -> j::AnyValue {
    let mut out = j::AnyValue::default();
    match v.value {
        Some(Value::Str(s)) => out.string_value = Some(s),
        Some(Value::Bool(b)) => out.bool_value = Some(b),
        Some(Value::Int(i)) => out.int_value = Some(j::Number::I(i)),
        Some(Value::Double(d)) => out.double_value = Some(d),
        Some(Value::Array(a)) => {
            out.array_value = Some(j::ArrayValue {
                values: a.values.into_iter().map(any_value).collect(),
            })
        }
        Some(Value::Kvlist(l)) => {
            out.kvlist_value = Some(j::KvList {
                values: l.values.into_iter().map(key_value).collect(),
            })
        }
        Some(Value::Bytes(b)) => {
            out.bytes_value = Some(b.iter().map(|x| format!("{x:02x}")).collect())
        }
        None => {}
    }
    out
}
