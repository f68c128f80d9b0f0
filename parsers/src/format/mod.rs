//! One module per format. Each reads from a stream in bounded memory and
//! reports every record it cannot parse.

mod binxml;
pub mod cluster_log;
pub mod event_xml;
pub mod evtx;
pub mod json_lines;
pub mod json_walk;
pub mod metrics_csv;
pub mod otlp_json;
pub mod ps_csv;
pub mod ps_json;
pub mod syslog;
pub mod viewer_text;
