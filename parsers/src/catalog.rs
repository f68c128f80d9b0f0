//! The message templates of the events relive reasons about, so an event
//! that arrives without its text (raw EVTX, `wevtutil qe /f:xml` without
//! `RenderingInfo`, Winlogbeat or OTLP with only the data) reads the same as
//! one Event Viewer rendered: detection, extraction and the web UI see one
//! text whatever the format.
//!
//! Windows keeps these texts in each provider's message table and fills the
//! `%1…%n` insertions with the event's data values in the order the event
//! carries them (`EventData/Data`, or the children of `UserData`'s element:
//! VMMS `Parameter0` is `%1`). The texts are those of the knowledge base
//! (`hyperv-kb.md` §2, from dumps of the message tables and real events).
//! Each entry names the event version it was taken from; an event whose
//! version differs is not rendered (its fields may be laid out otherwise),
//! and one that carries no version (text and CSV exports) is taken as the
//! version the catalog has.

use crate::event::Event;

/// One message template.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// Provider name (compared ignoring ASCII case).
    pub provider: &'static str,
    /// Event id.
    pub event_id: u32,
    /// The event version the template belongs to.
    pub version: u8,
    /// The text: `%1`…`%99` are insertions, `%%` a percent sign.
    pub text: &'static str,
}

const HA: &str = "Microsoft-Windows-Hyper-V-High-Availability";
const VMMS: &str = "Microsoft-Windows-Hyper-V-VMMS";
const WORKER: &str = "Microsoft-Windows-Hyper-V-Worker";
const FC: &str = "Microsoft-Windows-FailoverClustering";
const DNS: &str = "Microsoft-Windows-DNS-Client";

const fn t(provider: &'static str, event_id: u32, text: &'static str) -> Template {
    Template {
        provider,
        event_id,
        version: 0,
        text,
    }
}

/// Every template relive ships, by provider then event id.
pub const TEMPLATES: &[Template] = &[
    // Hyper-V-High-Availability (hyperv-kb.md §2.1).
    t(HA, 21102, "'%1' failed to register the virtual machine with the virtual machine management service."),
    t(HA, 21105, "'%1' failed to update the configuration data of the virtual machine: %2 (%3)."),
    t(HA, 21107, "'%1' failed to start."),
    t(HA, 21111, "Live migration of '%1' failed."),
    t(HA, 21121, "'%1' failed to cleanup the configuration on the target node prior to a migration: %2 (%3)."),
    t(HA, 21122, "The network configuration for live migration was changed. Cluster networks used for live migration: %1 Network IP addresses: %2."),
    t(HA, 21123, "Failed to set the migration networks at the VMMS: %1 (%2)."),
    t(HA, 21124, "There are more than one VM resources in a group. Live migration is possible only with one VM resource in the group."),
    t(HA, 21125, "Configuration setup for live migration failed on the destination node. Make sure that name of the virtual network is the same on the source and destination nodes, and try the live migration again."),
    t(HA, 21126, "Failed to get the network address for the destination node '%1': %2 (%3)."),
    t(HA, 21131, "'%1' failed to restore on the source host after a failed live migration."),
    t(HA, 21145, "'%1' failed to live migrate because a virtual switch used by the VM is disconnected on the destination node '%2'."),
    t(HA, 21152, "The shared storage location of the '%1' resource cannot be changed after it has been set."),
    t(HA, 21153, "The directory '%4' is not accessible by the '%1' resource: %2 (%3)"),
    t(HA, 21158, "'%1' failed to live migrate because of a hard dependency on a virtual switch on the current node."),
    t(HA, 21159, "'%1' failed to live migrate because a virtual switch used by the VM does not exist on the destination node '%2'."),
    t(HA, 21300, "Started live migration on the source node (VM resource '%2', VMID %1)."),
    t(HA, 21301, "Completed live migration on the source node, time %2 s (VM resource '%3', VMID %1)."),
    t(HA, 21302, "Started live migration Offline phase on the source node. (VMID %1)"),
    t(HA, 21303, "Completed live migration Offline phase on the source node, time %2 s. (VMID %1)"),
    t(HA, 21304, "Started live migration Move phase on the source node. (VMID %1)"),
    t(HA, 21305, "Completed live migration Move phase on the source node, time %2 s. (VMID %1)"),
    t(HA, 21306, "Started live migration on the target node (VM resource '%2', VMID %1)."),
    t(HA, 21307, "Completed live migration on the target node, time %2 s (VM resource '%3', VMID %1)."),
    t(HA, 21308, "Started live migration Restore phase on the target node. (VMID %1)"),
    t(HA, 21309, "Completed live migration Restore phase on the target node, time %2 s. (VMID %1)"),
    // The whole text is the third insertion: the failure with its body.
    t(HA, 21500, "%3"),
    t(HA, 21501, "%3"),
    t(HA, 21502, "%3"),
    t(HA, 21503, "%3"),
    // Hyper-V-VMMS (§2.2): UserData `VmlEventLog/Parameter0..n`.
    t(VMMS, 20415, "The Virtual Machine Management service successfully completed the live migration of virtual machine  '%1' with a blackout time of %3 seconds (VMID %2)."),
    t(VMMS, 20417, "The Virtual Machine Management service successfully completed the live migration of virtual machine \"%1\" with an unexpectedly long blackout time of %3 seconds (VMID %2)."),
    t(VMMS, 21024, "Virtual machine migration operation for '%1' failed at migration source '%3'. (Virtual machine ID %2)"),
    t(VMMS, 21066, "Failed to verify collection registry for virtual machine '%1': %3 (%4). (Virtual Machine ID %2)."),
    // Hyper-V-Worker (§2.3): UserData `VmName`, `VmId`.
    t(WORKER, 18500, "'%1' started successfully. (Virtual machine ID %2)"),
    t(WORKER, 18502, "'%1' was turned off. (Virtual machine ID %2)"),
    t(WORKER, 18504, "'%1' was shut down using the Shutdown integration component with the reason '%4'. (Virtual machine ID %2)"),
    t(WORKER, 18512, "'%1' was reset using Hyper-V Manager. (Virtual machine ID %2)"),
    // FailoverClustering, System log (§2.4).
    t(FC, 1069, "Cluster resource '%1' of type '%3' in clustered role '%2' failed."),
    t(FC, 1135, "Cluster node '%1' was removed from the active failover cluster membership. The Cluster service on this node may have stopped. This could also be due to the node having lost communication with other active nodes in the failover cluster."),
    t(FC, 1137, "Move of cluster role '%1' for drain could not be completed.  The operation failed with error code %2."),
    t(FC, 1146, "The cluster Resource Hosting Subsystem (RHS) process was terminated and will be restarted. This is typically associated with cluster health detection and recovery of a resource."),
    t(FC, 1153, "The Cluster Service is attempting to fail over the clustered role '%1' from node '%2' to node '%3'."),
    t(FC, 1155, "The pending move for the role '%1' did not complete."),
    t(FC, 1177, "The Cluster service is shutting down because quorum was lost. This could be due to the loss of network connectivity between some or all nodes in the cluster, or a failover of the witness disk."),
    t(FC, 1205, "The Cluster Service failed to bring clustered role '%1' completely online or offline. One or more resources may be in a failed state. This may impact the availability of the clustered role."),
    t(FC, 1230, "A component on the server did not respond in a timely fashion. This caused the cluster resource '%1' (resource type '%2', DLL '%3') to exceed its time-out threshold."),
    t(FC, 1252, "Cluster resource '%1' in clustered role '%2' rejected a move request to node '%3'. The error code was '%4'."),
    t(FC, 1254, "Clustered role '%1' has exceeded its failover threshold.  It has exhausted the configured number of failover attempts within the failover period of time allotted to it and will be left in a failed state.  No additional attempts will be made to bring the role online or fail it over to another node in the cluster."),
    t(FC, 1673, "Resource '%1' moved from group '%2' on node '%3' to group '%4' on node '%5'."),
    t(FC, 1808, "The cluster load balancer has identified the current node is exceeding the CPU or memory usage threshold.  Virtual Machines will be moved to a new node to balance the cluster."),
    t(FC, 5120, "Cluster Shared Volume '%1' ('%2') has entered a paused state because of '%3'. All I/O will temporarily be queued until a path to the volume is reestablished."),
    t(FC, 5121, "Cluster Shared Volume '%1' ('%2') is no longer directly accessible from this cluster node. I/O access will be redirected to the storage device over the network to the node that owns the volume."),
    t(FC, 5142, "Cluster Shared Volume '%1' ('%2') is no longer accessible from this cluster node because of error '%3'. Please troubleshoot this node's connectivity to the storage device and network connectivity."),
    t(FC, 5150, "Cluster physical disk resource '%1' failed.  The Cluster Shared Volume was put in failed state with the following error: '%2'"),
    // DNS Client.
    t(DNS, 1014, "Name resolution for the name %1 timed out after none of the configured DNS servers responded."),
];

/// The template for an event's provider, id and version (`None` = the
/// event does not say: the catalog's), if relive has one.
pub fn template(provider: &str, event_id: u32, version: Option<u8>) -> Option<&'static Template> {
    // The table is small and sorted by provider then id: a scan over ids
    // first rejects almost every event with one comparison each.
    TEMPLATES.iter().find(|t| {
        t.event_id == event_id
            && t.provider.eq_ignore_ascii_case(provider)
            && version.is_none_or(|v| v == t.version)
    })
}

/// Fills `event.message` from the catalog when the event has none and
/// relive knows its template; marks it as rendered by relive. Returns
/// whether it did.
pub fn render_missing(event: &mut Event) -> bool {
    if !event.message.is_empty() {
        return false;
    }
    let Some(template) = template(&event.provider, event.event_id, event.version) else {
        return false;
    };
    let values: Vec<&str> = event.data.iter().map(|(_, v)| v).collect();
    let text = render(template.text, &values);
    if text.trim().is_empty() {
        return false;
    }
    event.message = text;
    event.message_rendered = true;
    true
}

/// `text` with `%n` replaced by `values[n - 1]` (a format spec `%n!s!` is
/// dropped with it), `%%` by `%`. An insertion the event does not carry
/// stays as written (`%4`), as Event Viewer shows it.
pub fn render(text: &str, values: &[&str]) -> String {
    let mut out = String::with_capacity(text.len() + values.iter().map(|v| v.len()).sum::<usize>());
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut from = 0;
    while let Some(rel) = memchr::memchr(b'%', &bytes[i..]) {
        let at = i + rel;
        out.push_str(&text[from..at]);
        let rest = &bytes[at + 1..];
        if rest.first() == Some(&b'%') {
            out.push('%');
            i = at + 2;
            from = i;
            continue;
        }
        let digits = rest
            .iter()
            .take(2)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            out.push('%');
            i = at + 1;
            from = i;
            continue;
        }
        let n: usize = text[at + 1..at + 1 + digits].parse().unwrap_or(0);
        let mut end = at + 1 + digits;
        // `%1!s!`: a printf-style spec for the insertion.
        if bytes.get(end) == Some(&b'!') {
            if let Some(close) = memchr::memchr(b'!', &bytes[end + 1..]) {
                end += close + 2;
            }
        }
        match n.checked_sub(1).and_then(|k| values.get(k)) {
            Some(value) => out.push_str(value),
            None => out.push_str(&text[at..end]),
        }
        i = end;
        from = i;
    }
    out.push_str(&text[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insertions_in_any_order_with_specs_and_percent_signs() {
        assert_eq!(
            render(
                "Completed, time %2 s (VM resource '%3', VMID %1).",
                &["ID", "13.9", "Virtual Machine A"]
            ),
            "Completed, time 13.9 s (VM resource 'Virtual Machine A', VMID ID)."
        );
        assert_eq!(
            render("%1!s! at 100%% of %2", &["x", "y"]),
            "x at 100% of y"
        );
        assert_eq!(render("missing %4 stays", &["a"]), "missing %4 stays");
        assert_eq!(render("50% done, %", &[]), "50% done, %");
        assert_eq!(render("%3", &["a", "b", "multi\nline"]), "multi\nline");
        assert_eq!(render("%10 and %1", &["one"]), "%10 and one");
    }

    #[test]
    fn every_template_is_unique_and_renders_without_leftovers_when_data_is_complete() {
        for (i, t) in TEMPLATES.iter().enumerate() {
            assert!(
                !TEMPLATES[..i].iter().any(|o| o.provider == t.provider
                    && o.event_id == t.event_id
                    && o.version == t.version),
                "{} {} twice",
                t.provider,
                t.event_id
            );
            let values: Vec<String> = (1..=9).map(|n| format!("<{n}>")).collect();
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            let text = render(t.text, &values);
            assert!(
                !text.contains('%') || t.text.contains("%%"),
                "{}: {text}",
                t.event_id
            );
        }
    }

    #[test]
    fn renders_only_what_has_no_message_and_a_known_template() {
        let mut e = Event {
            provider: HA.to_ascii_lowercase().into(),
            event_id: 21502,
            ..Event::default()
        };
        e.data.push("Parameter1", "Virtual Machine APP1");
        e.data
            .push("Parameter2", "0D526761-FCC2-44CB-9A4B-6522B08DD2B9");
        e.data.push(
            "Parameter3",
            "Live migration of 'Virtual Machine APP1' failed.\nmore",
        );
        assert!(render_missing(&mut e));
        assert_eq!(
            e.message,
            "Live migration of 'Virtual Machine APP1' failed.\nmore"
        );
        assert!(e.message_rendered);
        // Already has text: left alone.
        assert!(!render_missing(&mut e));
        // Another version: not rendered.
        let mut other = Event {
            provider: HA.into(),
            event_id: 21111,
            version: Some(3),
            ..Event::default()
        };
        other.data.push("ResourceName", "Virtual Machine APP1");
        assert!(!render_missing(&mut other));
        other.version = Some(0);
        assert!(render_missing(&mut other));
        assert_eq!(
            other.message,
            "Live migration of 'Virtual Machine APP1' failed."
        );
        // Unknown event: the fallback stays (no message).
        let mut unknown = Event {
            provider: HA.into(),
            event_id: 1,
            ..Event::default()
        };
        unknown.data.push("a", "b");
        assert!(!render_missing(&mut unknown));
        assert!(unknown.message.is_empty());
    }
}
