//! The deterministic event generator the index and web benchmarks share
//! (included with `#[path]`; not a library API): 16 hosts; System,
//! Security, Hyper-V Worker/VMMS/High-Availability, FailoverClustering and
//! cluster.log; about 1 % of the events in failed-migration chains.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use parsers::{Event, Level};

/// Hosts the events come from.
pub const HOSTS: u64 = 16;
/// VMs they name.
pub const VMS: u64 = 4000;

/// Deterministic event generator: the same seed gives the same events.
pub struct Gen {
    seed: u64,
    t: DateTime<Utc>,
    records: Vec<u64>,
    chain: u64,
}

const CHANNELS: usize = 6;

/// `HVnn.contoso.local`.
pub fn host_name(h: u64) -> String {
    format!("HV{:02}.contoso.local", h + 1)
}

/// `VM-nnnn`.
pub fn vm_name(v: u64) -> String {
    format!("VM-{v:04}")
}

/// The VM's id.
pub fn vm_guid(v: u64) -> String {
    format!("{:08X}-5A3C-4E21-9B7D-{:012X}", 0x1000_0000 + v, v * 7919)
}

impl Default for Gen {
    fn default() -> Self {
        Gen::new()
    }
}

impl Gen {
    /// The generator at its fixed seed.
    pub fn new() -> Gen {
        Gen {
            seed: 0x9E37_79B9_7F4A_7C15,
            t: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            records: vec![0; (HOSTS as usize) * CHANNELS],
            chain: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        host: u64,
        channel_ix: usize,
        channel: &str,
        provider: &str,
        id: u32,
        level: Level,
        message: String,
        data: &[(&'static str, String)],
    ) -> Event {
        let slot = host as usize * CHANNELS + channel_ix;
        self.records[slot] += 1;
        let mut e = Event {
            timestamp: self.t,
            host: host_name(host).into(),
            channel: channel.into(),
            provider: provider.into(),
            event_id: id,
            level,
            record_id: (channel_ix != 5).then_some(self.records[slot]),
            message,
            ..Event::default()
        };
        for (name, value) in data {
            e.data.push_static(name, value.as_str());
        }
        e.origin.format = Some(if channel_ix == 5 {
            parsers::Format::ClusterLog
        } else {
            parsers::Format::Evtx
        });
        parsers::extract::enrich(&mut e);
        e
    }

    /// Appends the next ~100 events, about one of them in a failed
    /// migration chain.
    pub fn batch(&mut self, out: &mut Vec<Event>) {
        const VMMS: &str = "Microsoft-Windows-Hyper-V-VMMS";
        const VMMS_CH: &str = "Microsoft-Windows-Hyper-V-VMMS-Admin";
        const WORKER: &str = "Microsoft-Windows-Hyper-V-Worker";
        const WORKER_CH: &str = "Microsoft-Windows-Hyper-V-Worker-Admin";
        const HA: &str = "Microsoft-Windows-Hyper-V-High-Availability";
        const HA_CH: &str = "Microsoft-Windows-Hyper-V-High-Availability-Admin";
        const FC: &str = "Microsoft-Windows-FailoverClustering";
        for _ in 0..99 {
            let r = self.next();
            self.t += TimeDelta::microseconds((r % 50_000) as i64);
            let host = (r >> 8) % HOSTS;
            let v = (r >> 16) % VMS;
            let name = vm_name(v);
            let guid = vm_guid(v);
            let e = match (r >> 32) % 20 {
                0..=4 => {
                    let services = ["Windows Update", "BITS", "WinRM", "Hyper-V Virtual Machine Management", "Cluster Service"];
                    let svc = services[((r >> 40) % 5) as usize];
                    let state = if r & 1 == 0 { "running" } else { "stopped" };
                    self.event(host, 0, "System", "Service Control Manager", 7036, Level::Information,
                        format!("The {svc} service entered the {state} state."),
                        &[("param1", svc.to_string()), ("param2", state.to_string())])
                }
                5 => self.event(host, 0, "System", "Microsoft-Windows-DNS-Client", 1014, Level::Warning,
                    format!("Name resolution for the name wpad{}.contoso.local timed out after none of the configured DNS servers responded.", r % 97),
                    &[("QueryName", format!("wpad{}.contoso.local", r % 97))]),
                6 => self.event(host, 0, "System", "Microsoft-Windows-DistributedCOM", 10016, Level::Warning,
                    "The application-specific permission settings do not grant Local Activation permission for the COM Server application with CLSID {D63B10C5-BB46-4990-A94F-E40B9D520160} to the user NT AUTHORITY\\SYSTEM SID (S-1-5-18).".to_string(),
                    &[]),
                7..=10 => {
                    let user = format!("svc-backup{}", r % 13);
                    let ip = format!("10.0.{}.{}", (r >> 20) % 4, (r >> 24) % 250 + 1);
                    self.event(host, 1, "Security", "Microsoft-Windows-Security-Auditing", 4624, Level::Information,
                        format!("An account was successfully logged on.\n\nSubject:\n\tSecurity ID:\t\tS-1-5-18\n\tAccount Name:\t\t{user}\n\tLogon Type:\t\t3\n\tSource Network Address:\t{ip}"),
                        &[("TargetUserName", user.clone()), ("LogonType", "3".into()), ("IpAddress", ip)])
                }
                11..=13 => {
                    let (id, text) = match r % 3 {
                        0 => (18500, format!("'{name}' started successfully. (Virtual machine ID {guid})")),
                        1 => (18502, format!("'{name}' was turned off. (Virtual machine ID {guid})")),
                        _ => (18508, format!("'{name}' was saved. (Virtual machine ID {guid})")),
                    };
                    self.event(host, 2, WORKER_CH, WORKER, id, Level::Information, text,
                        &[("VmName", name.clone()), ("VmId", guid.clone())])
                }
                14 | 15 => {
                    let dst = (host + 1 + (r >> 44) % (HOSTS - 1)) % HOSTS;
                    let blackout = (r >> 48) % 900 + 50;
                    let mut e = self.event(host, 3, VMMS_CH, VMMS, 20415, Level::Information,
                        format!("The Virtual Machine Management service successfully completed the live migration of virtual machine '{name}' with a blackout time of {}.{:03} seconds (VMID {guid}).", blackout / 1000, blackout % 1000),
                        &[("VmName", name.clone()), ("VmId", guid.clone()), ("DestinationHost", host_name(dst))]);
                    e.level = Level::Information;
                    e
                }
                16 | 17 => self.event(host, 4, "Microsoft-Windows-FailoverClustering/Operational", FC, 1641, Level::Information,
                    format!("Clustered role 'SCVMM {name}' is moving from cluster node 'HV{:02}' to cluster node 'HV{:02}'.", host + 1, (host + 3) % HOSTS + 1),
                    &[("ResourceGroup", format!("SCVMM {name}"))]),
                _ => {
                    let components = ["NM", "RHS", "RCM", "GUM", "DCM"];
                    let comp = components[(r % 5) as usize];
                    self.event(host, 5, "cluster.log", FC, 0, Level::Information,
                        format!("[{comp}] Received request from client address HV{:02}. Processing resource 'Virtual Machine {name}' state change.", (r >> 12) % HOSTS + 1),
                        &[("ProcessId", format!("{:08x}", 0xb94 + host)), ("ThreadId", format!("{:08x}", r % 0x4000)), ("Component", comp.into())])
                }
            };
            out.push(e);
        }
        // About 1 % of the events: one failed migration of one of four kinds.
        self.chain += 1;
        if !self.chain.is_multiple_of(3) {
            return;
        }
        let r = self.next();
        let v = (r >> 16) % VMS;
        let (name, guid) = (vm_name(v), vm_guid(v));
        let src = (r >> 8) % HOSTS;
        let dst = (src + 1 + (r >> 40) % (HOSTS - 1)) % HOSTS;
        let body = match self.chain % 4 {
            0 => format!("Failed to verify collection registry for virtual machine '{name}': The system cannot find the file specified. (0x80070002). (Virtual Machine ID {guid})."),
            1 => format!("'{name}' failed to live migrate because a virtual switch used by the VM doesn't exist on the destination node 'HV{:02}'.", dst + 1),
            2 => format!("Virtual machine migration operation for '{name}' failed at migration source 'HV{:02}'. (Virtual machine ID {guid}) No connection could be made because the target machine actively refused it. (0x8007274D).", src + 1),
            _ => format!("Virtual machine migration operation for '{name}' failed at migration source 'HV{:02}'. The data is invalid. (0x8007000D).", src + 1),
        };
        let data = [("VmName", name.clone()), ("VmId", guid.clone())];
        if self.chain.is_multiple_of(4) {
            let e = self.event(
                dst,
                3,
                VMMS_CH,
                VMMS,
                21066,
                Level::Error,
                body.clone(),
                &data,
            );
            out.push(e);
        }
        let e = self.event(
            src,
            3,
            HA_CH,
            HA,
            21502,
            Level::Error,
            format!("Live migration of 'Virtual Machine {name}' failed.\n{body}"),
            &data,
        );
        out.push(e);
        let e = self.event(
            src,
            3,
            HA_CH,
            HA,
            21111,
            Level::Error,
            format!("Live migration of 'Virtual Machine {name}' failed."),
            &data,
        );
        out.push(e);
    }
}

/// Calls `each` with every generated event, in chunks.
pub fn generate(n: usize, mut each: impl FnMut(&Event)) {
    let mut gen = Gen::new();
    let mut chunk = Vec::with_capacity(256);
    let mut done = 0;
    while done < n {
        chunk.clear();
        gen.batch(&mut chunk);
        for e in chunk.iter().take(n - done) {
            each(e);
        }
        done += chunk.len().min(n - done);
    }
}
