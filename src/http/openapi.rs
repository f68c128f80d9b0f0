//! `/openapi.json`: the API as OpenAPI 3.0. Written by hand next to the
//! router; the end-to-end test runs schemathesis against a live server
//! with it, so a route or an answer that drifts from it fails.

use axum::Json;
use serde_json::{json, Value};

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn path(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": { "type": "string" } })
}

fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn error(description: &str) -> Value {
    ok(description, json!({ "$ref": "#/components/schemas/Error" }))
}

/// An operation: its answers plus the ones every operation can give.
fn op(summary: &str, id: &str, parameters: Vec<Value>, mut responses: Value) -> Value {
    let r = responses.as_object_mut().expect("an object");
    r.entry("401")
        .or_insert_with(|| error("No token, or a token that is not valid."));
    r.entry("403").or_insert_with(|| {
        error("A read-only token asked for a change, or a browser session sent no CSRF token.")
    });
    json!({ "summary": summary, "operationId": id, "parameters": parameters, "responses": responses })
}

fn with_body(mut operation: Value, schema: Value) -> Value {
    operation["requestBody"] = json!({
        "required": false,
        "content": { "application/json": { "schema": schema } }
    });
    operation
}

fn time_params() -> Vec<Value> {
    vec![
        query(
            "since",
            "At or after this time: RFC 3339, or a span back from now (24h, 7d).",
            json!({ "type": "string" }),
        ),
        query(
            "until",
            "Before this time (same forms).",
            json!({ "type": "string" }),
        ),
    ]
}

/// The document.
pub(crate) fn build() -> Value {
    let any_object = json!({ "type": "object" });
    let nullable_string = json!({ "type": "string", "nullable": true });
    let summary = json!({
        "type": "object",
        "required": ["id", "root_cause", "title", "status", "count", "confidence", "first_seen", "last_seen"],
        "properties": {
            "id": { "type": "string" },
            "root_cause": { "type": "string" },
            "title": { "type": "string" },
            "vm_name": nullable_string,
            "vm_id": nullable_string,
            "source_host": nullable_string,
            "destination_host": nullable_string,
            "status": { "type": "string", "enum": ["open", "resolved"] },
            "count": { "type": "integer", "minimum": 0 },
            "confidence": { "type": "number" },
            "first_seen": { "type": "string", "format": "date-time" },
            "last_seen": { "type": "string", "format": "date-time" },
            "related_vms": { "type": "integer", "minimum": 0 }
        }
    });
    let incident = json!({
        "type": "object",
        "required": ["id", "root_cause", "title", "status", "count", "confidence", "evidence", "remediation", "first_seen", "last_seen"],
        "properties": {
            "id": { "type": "string" },
            "root_cause": { "type": "string" },
            "title": { "type": "string" },
            "status": { "type": "string", "enum": ["open", "resolved"] },
            "count": { "type": "integer" },
            "confidence": { "type": "number" },
            "first_seen": { "type": "string", "format": "date-time" },
            "last_seen": { "type": "string", "format": "date-time" },
            "evidence": { "type": "array", "items": { "$ref": "#/components/schemas/Evidence" } },
            "remediation": any_object
        }
    });
    let evidence = json!({
        "type": "object",
        "required": ["timestamp", "host", "channel", "provider", "event_id", "level", "message", "rule", "origin"],
        "properties": {
            "timestamp": { "type": "string", "format": "date-time" },
            "host": { "type": "string" },
            "channel": { "type": "string" },
            "provider": { "type": "string" },
            "event_id": { "type": "integer", "minimum": 0 },
            "level": { "type": "string" },
            "message": { "type": "string" },
            "rule": { "type": "string" },
            "origin": {
                "type": "object",
                "required": ["offset"],
                "properties": { "path": { "type": "string" }, "offset": { "type": "integer", "minimum": 0 } }
            }
        }
    });
    let audit_entry = json!({
        "type": "object",
        "required": ["at", "incident", "what"],
        "properties": {
            "at": { "type": "string", "format": "date-time" },
            "incident": { "type": "string" },
            "key": { "type": "string" },
            "what": { "type": "string" },
            "who": { "type": "string" },
            "detail": { "type": "string" }
        }
    });
    let silence = json!({
        "type": "object",
        "required": ["id", "matchers", "starts_at", "ends_at", "created_by", "comment"],
        "properties": {
            "id": { "type": "string" },
            "matchers": { "type": "array" },
            "starts_at": { "type": "string", "format": "date-time" },
            "ends_at": { "type": "string", "format": "date-time" },
            "created_by": { "type": "string" },
            "comment": { "type": "string" },
            "state": { "type": "string", "enum": ["active", "pending", "expired"] }
        }
    });
    let group = json!({
        "type": "object",
        "required": ["key", "migrations", "failures", "failure_rate"],
        "properties": {
            "key": { "type": "string" },
            "migrations": { "type": "integer" },
            "failures": { "type": "integer" },
            "failure_rate": { "type": "number" }
        }
    });
    let decision_body = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "incident": { "type": "string", "description": "The incident the action must belong to (id or prefix)." },
            "comment": { "type": "string" },
            "by": { "type": "string", "description": "Who decides, for the audit log." }
        }
    });
    let decided = json!({
        "type": "object",
        "required": ["decided"],
        "properties": { "decided": { "$ref": "#/components/schemas/AuditEntry" } }
    });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "relive",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Failed Hyper-V live migrations: search the logs, read the incidents and their evidence, approve repairs, silence alerts, migration analytics. Every path but /healthz needs `Authorization: Bearer TOKEN` (read-only or admin); changes need the admin token."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": { "type": "string" },
                        "position": { "type": "integer", "minimum": 0, "description": "Character of the query where the problem is." }
                    }
                },
                "IncidentSummary": summary,
                "Incident": incident,
                "Evidence": evidence,
                "AuditEntry": audit_entry,
                "Silence": silence,
                "Group": group
            }
        },
        "security": [{ "bearer": [] }],
        "paths": {
            "/healthz": { "get": {
                "summary": "Liveness", "operationId": "healthz", "security": [],
                "responses": { "200": ok("Up.", json!({ "type": "object", "required": ["status"], "properties": { "status": { "type": "string", "enum": ["ok"] } } })) }
            }},
            "/metrics": { "get": op("Prometheus metrics", "metrics", vec![], json!({
                "200": { "description": "Prometheus text exposition format.", "content": { "text/plain": { "schema": { "type": "string" } } } }
            }))},
            "/api/v1/search": { "get": op("Search events", "search", {
                let mut p = vec![
                    query("q", "Query in the CLI's syntax (Lucene over host, event_id, level, channel, provider, vm_name, vm_id, hresult, message, format); empty matches all.", json!({ "type": "string" })),
                ];
                p.extend(time_params());
                p.push(query("limit", "Hits to return, newest first.", json!({ "type": "integer", "minimum": 1, "maximum": super::api::MAX_HITS, "default": 50 })));
                p.push(query("count_by", "Comma-separated fields to count matches by (host, event_id, level, channel, provider, vm_name, vm_id, hresult); top 50 each.", json!({ "type": "string" })));
                p.push(query("histogram", "Matches over time: `auto` or a bucket width such as 1m.", json!({ "type": "string" })));
                p
            }, json!({
                "200": ok("Matches.", json!({
                    "type": "object",
                    "required": ["total", "took_ms", "hits"],
                    "properties": {
                        "total": { "type": "integer", "minimum": 0 },
                        "took_ms": { "type": "number" },
                        "hits": { "type": "array", "items": { "type": "object", "required": ["timestamp", "event"], "properties": { "timestamp": { "type": "string", "format": "date-time" }, "event": any_object } } },
                        "counts": { "type": "object", "additionalProperties": { "type": "array", "items": { "type": "object", "required": ["value", "count"], "properties": { "value": { "type": "string" }, "count": { "type": "integer" } } } } },
                        "histogram": { "type": "object", "required": ["interval_ms", "buckets"], "properties": { "interval_ms": { "type": "integer" }, "buckets": { "type": "array", "items": { "type": "object", "required": ["start", "count"], "properties": { "start": { "type": "string", "format": "date-time" }, "count": { "type": "integer" } } } } } }
                    }
                })),
                "400": error("The query, a time, the limit or a field is not valid; `position` points at a query's problem.")
            }))},
            "/api/v1/incidents": { "get": op("List incidents", "listIncidents", {
                let mut p = vec![
                    query("status", "open or resolved (empty: either).", json!({ "type": "string", "enum": ["", "open", "resolved"] })),
                    query("vm", "VM name or id.", json!({ "type": "string" })),
                    query("host", "Source or destination host.", json!({ "type": "string" })),
                    query("root_cause", "Root-cause name.", json!({ "type": "string" })),
                    query("since", "Last seen at or after (RFC 3339 or a span such as 24h).", json!({ "type": "string" })),
                    query("sort", "last_seen, first_seen, confidence, count, root_cause or vm; a leading - sorts descending (default -last_seen).", json!({ "type": "string", "enum": std::iter::once(String::new()).chain(super::api::SORTS.iter().flat_map(|s| [s.to_string(), format!("-{s}")])).collect::<Vec<_>>() })),
                ];
                p.push(query("limit", "At most this many.", json!({ "type": "integer", "minimum": 1, "maximum": 10000, "default": 500 })));
                p
            }, json!({
                "200": ok("Incidents.", json!({ "type": "object", "required": ["total", "incidents"], "properties": { "total": { "type": "integer" }, "incidents": { "type": "array", "items": { "$ref": "#/components/schemas/IncidentSummary" } } } })),
                "400": error("A filter is not valid.")
            }))},
            "/api/v1/incidents/{id}": { "get": op("An incident", "getIncident", vec![path("id", "Incident id or a unique prefix.")], json!({
                "200": ok("The incident with its evidence and playbook.", json!({ "$ref": "#/components/schemas/Incident" })),
                "404": error("No such incident.")
            }))},
            "/api/v1/incidents/{id}/explain": { "get": op("Timeline, why, checks, fix and the plan's state", "explainIncident", vec![path("id", "Incident id or a unique prefix.")], json!({
                "200": ok("The explanation.", json!({
                    "type": "object",
                    "required": ["incident", "lanes", "related", "actions", "audit", "alerts"],
                    "properties": {
                        "incident": { "$ref": "#/components/schemas/Incident" },
                        "lanes": { "type": "array", "items": { "type": "string", "enum": ["source", "destination", "cluster"] } },
                        "related": { "type": "array", "items": any_object },
                        "why": { "type": "object", "nullable": true },
                        "plan": { "type": "object", "nullable": true },
                        "plan_problem": nullable_string,
                        "actions": { "type": "array", "items": { "type": "object", "required": ["key", "stage", "title", "class", "state", "waiting"], "properties": { "key": { "type": "string" }, "state": { "type": "string" }, "waiting": { "type": "boolean" } } } },
                        "audit": { "type": "array", "items": { "$ref": "#/components/schemas/AuditEntry" } },
                        "alerts": { "type": "array", "items": any_object }
                    }
                })),
                "404": error("No such incident.")
            }))},
            "/api/v1/actions": { "get": op("The remediation audit log", "listActions", vec![
                query("incident", "Only this incident's (id or prefix).", json!({ "type": "string" }))
            ], json!({
                "200": ok("Entries, oldest first.", json!({ "type": "object", "required": ["entries", "unreadable"], "properties": { "entries": { "type": "array", "items": { "$ref": "#/components/schemas/AuditEntry" } }, "unreadable": { "type": "integer" } } })),
                "400": error("The query string is not valid.")
            }))},
            "/api/v1/actions/{key}/approve": { "post": with_body(op("Approve an action waiting for approval", "approveAction", vec![path("key", "The action's key.")], json!({
                "200": ok("Recorded in the audit log.", decided.clone()),
                "400": error("The body is not valid."),
                "404": error("No such action."),
                "409": error("It does not wait for approval, the request expired, it belongs to another incident, or it stops VMs outside a maintenance window.")
            })), decision_body.clone())},
            "/api/v1/actions/{key}/reject": { "post": with_body(op("Reject an action waiting for approval", "rejectAction", vec![path("key", "The action's key.")], json!({
                "200": ok("Recorded in the audit log.", decided),
                "400": error("The body is not valid."),
                "404": error("No such action."),
                "409": error("It does not wait for approval, the request expired or it belongs to another incident.")
            })), decision_body)},
            "/api/v1/silences": {
                "get": op("Silences", "listSilences", vec![], json!({
                    "200": ok("Every silence with its state.", json!({ "type": "object", "required": ["silences"], "properties": { "silences": { "type": "array", "items": { "$ref": "#/components/schemas/Silence" } } } }))
                })),
                "post": with_body(op("Add a silence", "addSilence", vec![], json!({
                    "201": {
                        "description": "Added.",
                        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Silence" } } },
                        "links": { "ExpireSilence": { "operationId": "expireSilence", "parameters": { "id": "$response.body#/id" } } }
                    },
                    "400": error("Matchers, duration or ends_at not valid, or it would mute everything.")
                })), json!({
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "matchers": { "type": "array", "minItems": 1, "items": { "type": "string", "minLength": 3 }, "description": "Alertmanager matchers such as vm=ADFS1 or root_cause=~\"shared.*\" (at least one that does not match an empty label)." },
                        "duration": { "type": "string", "description": "How long, such as 2h (or give ends_at)." },
                        "ends_at": { "type": "string", "description": "RFC 3339 end." },
                        "comment": { "type": "string" },
                        "created_by": { "type": "string" }
                    }
                }))
            },
            "/api/v1/silences/{id}": { "delete": op("Expire a silence now", "expireSilence", vec![path("id", "Silence id or a unique prefix.")], json!({
                "200": ok("Expired.", json!({ "type": "object", "required": ["expired"], "properties": { "expired": { "$ref": "#/components/schemas/Silence" } } })),
                "404": error("No such silence."),
                "409": error("Already expired, or the prefix names several.")
            }))},
            "/api/v1/stats": { "get": op("Migration analytics (polars)", "stats", {
                let mut p = time_params();
                p.push(query("top", "Length of the top lists.", json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": 10 })));
                p
            }, json!({
                "200": ok("Per pair, transport, hour and day; percentiles; top VMs and causes.", json!({
                    "type": "object",
                    "required": ["source", "total", "pairs", "transports", "per_hour", "per_day", "top_failing_vms", "top_root_causes"],
                    "properties": {
                        "source": { "type": "string", "enum": ["metrics", "events"] },
                        "total": { "$ref": "#/components/schemas/Group" },
                        "pairs": { "type": "array", "items": { "$ref": "#/components/schemas/Group" } },
                        "transports": { "type": "array", "items": { "$ref": "#/components/schemas/Group" } },
                        "per_hour": { "type": "array", "items": any_object },
                        "per_day": { "type": "array", "items": any_object },
                        "top_failing_vms": { "type": "array", "items": any_object },
                        "top_root_causes": { "type": "array", "items": any_object }
                    }
                })),
                "400": error("A time or top is not valid.")
            }))},
            "/api/v1/status": { "get": op("Pipeline, receivers, index, incidents and remediation status", "status", vec![], json!({
                "200": ok("Status.", json!({ "type": "object", "required": ["mode", "version", "index", "incidents", "stages", "remediation", "hosts", "hosts_omitted", "agents"], "properties": {
                    "mode": { "type": "string", "enum": ["serve", "ui"] },
                    "hosts": { "type": "array", "items": { "type": "object", "required": ["host", "events"], "properties": { "host": { "type": "string" }, "events": { "type": "integer" }, "newest_event": { "type": "string", "format": "date-time", "nullable": true } } } },
                    "hosts_omitted": { "type": "integer", "minimum": 0, "description": "Hosts beyond the 200 with the most events, not listed." },
                    "agents": { "type": "array", "items": { "type": "object", "required": ["name", "peer", "connected", "connected_at", "batches"], "properties": { "name": { "type": "string" }, "connected": { "type": "boolean" }, "batches": { "type": "integer" } } } }
                } }))
            }))},
            "/api/v1/migrations": {
                "get": op("relive hosts' VMs and ledgers; migrations started here", "listMigrations", vec![], json!({
                    "200": ok("Hosts and migrations.", json!({ "type": "object", "required": ["hosts", "started"], "properties": { "hosts": { "type": "array", "items": any_object }, "started": { "type": "array", "items": any_object } } }))
                })),
                "post": with_body(op("Start a live migration on a relive host", "startMigration", vec![], json!({
                    "202": {
                        "description": "Started.",
                        "content": { "application/json": { "schema": { "type": "object", "required": ["host", "id"], "properties": { "host": { "type": "string" }, "id": { "type": "string" } } } } },
                        "links": { "Progress": { "operationId": "migrationProgress", "parameters": { "host": "$response.body#/host", "id": "$response.body#/id" } } }
                    },
                    "400": error("source, vm or destination missing."),
                    "404": error("The source is not in [remediation.hosts]."),
                    "409": error("The host refused (no such VM, pre-flight failed, limit reached)."),
                    "502": error("The host cannot be reached.")
                })), json!({
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["source", "vm", "destination"],
                    "properties": {
                        "source": { "type": "string", "minLength": 1, "description": "Host name in [remediation.hosts]." },
                        "vm": { "type": "string", "minLength": 1 },
                        "destination": { "type": "string", "minLength": 1 }
                    }
                }))
            },
            "/api/v1/migrations/{host}/{id}": { "get": op("A migration's progress (query-migrate)", "migrationProgress", vec![path("host", "Host name in [remediation.hosts]."), path("id", "Migration id.")], json!({
                "200": ok("Status, passes, dirty pages, remaining.", json!({ "type": "object", "required": ["host", "id", "progress"], "properties": { "progress": any_object } })),
                "404": error("No such host or migration."),
                "502": error("The host cannot be reached.")
            }))},
            "/api/v1/stream": { "get": op("Incident changes as server-sent events (opened, updated, resolved, actions)", "stream", vec![], json!({
                "200": { "description": "An event stream; each event's data is JSON.", "content": { "text/event-stream": { "schema": { "type": "string" } } } }
            }))}
        }
    })
}

/// `GET /openapi.json`.
pub(crate) async fn document() -> Json<Value> {
    Json(build())
}
