//! Every pre-flight failure: the exact error kind, the Hyper-V text and
//! HRESULT, the notice on the host that found it, and the VM still running
//! on the source.

use migrate_core::config::{AuthMode, Disk, HostConfig};
use migrate_core::host::{Notice, Role};
use migrate_core::report::{MigrationParams, Status};
use migrate_core::ErrorKind;

use crate::{assert_runs_on_source, host, request, vm, wait_for_destination};

struct Case {
    name: &'static str,
    dst: fn(&mut HostConfig),
    src: fn(&mut HostConfig),
    vm: fn(&mut migrate_core::config::VmConfig),
    initiator: Option<&'static str>,
    kind: ErrorKind,
    texts: &'static [&'static str],
    /// Found by the destination (it records the failure too).
    at_destination: bool,
}

fn none(_: &mut HostConfig) {}
fn same(_: &mut migrate_core::config::VmConfig) {}

#[test]
fn each_preflight_failure_has_its_kind_text_notice_and_leaves_the_vm_on_the_source() {
    let shared = tempfile::tempdir().unwrap();
    let cases = [
        Case {
            name: "switch names are case-sensitive",
            dst: |c| c.switches = vec!["external".into()],
            src: none,
            vm: same,
            initiator: None,
            kind: ErrorKind::SwitchMissing,
            texts: &[
                "virtual switch used by the VM doesn't exist on the destination node",
                "'External'",
            ],
            at_destination: true,
        },
        Case {
            name: "processor features",
            dst: |c| c.processor.features.retain(|f| f != "avx2"),
            src: none,
            vm: same,
            initiator: None,
            kind: ErrorKind::ProcessorIncompatible,
            texts: &[
                "hardware on the destination computer isn't compatible",
                "avx2",
            ],
            at_destination: true,
        },
        Case {
            name: "configuration version",
            dst: |c| c.config_versions = vec!["8.0".into()],
            src: none,
            vm: same,
            initiator: None,
            kind: ErrorKind::ConfigVersionUnsupported,
            texts: &["configuration version 9.0 is not supported"],
            at_destination: true,
        },
        Case {
            name: "capacity",
            dst: |c| c.memory_mib = 8,
            src: none,
            vm: same,
            initiator: None,
            kind: ErrorKind::OutOfMemory,
            texts: &["could not initialize memory: Ran out of memory (0x8007000E)"],
            at_destination: true,
        },
        Case {
            name: "NUMA fit without spanning",
            dst: |c| {
                c.numa_nodes_mib = vec![24, 24];
                c.numa_spanning = false;
            },
            src: none,
            vm: same,
            initiator: None,
            kind: ErrorKind::NumaNoFit,
            texts: &["Failed to create partition", "0x800705AA"],
            at_destination: true,
        },
        Case {
            name: "migration disabled",
            dst: |c| c.migration_enabled = false,
            src: none,
            vm: same,
            initiator: None,
            kind: ErrorKind::MigrationDisabled,
            texts: &[
                "disabled the listener for Virtual Machine migration connections",
                "0x8007274D",
            ],
            at_destination: true,
        },
        Case {
            name: "migration network",
            dst: |c| c.migration_networks = vec!["10.0.0.0/24".into()],
            src: none,
            vm: same,
            initiator: None,
            kind: ErrorKind::MigrationNetwork,
            texts: &["0x000013AB", "10.0.0.0/24"],
            at_destination: true,
        },
        Case {
            name: "shared storage path",
            dst: |_| {},
            src: |c| {
                c.shared_storage = Some(std::env::temp_dir().join("relive-test-shared-storage"))
            },
            vm: |v| {
                v.disk = Some(Disk {
                    path: "ADFS1/disk.vhdx".into(),
                    shared: true,
                    size_mib: 1,
                })
            },
            initiator: None,
            kind: ErrorKind::SharedStorageMissing,
            texts: &["Failed to verify collection registry", "0x80070002"],
            at_destination: true,
        },
        Case {
            name: "CredSSP initiated remotely",
            dst: |_| {},
            src: |c| c.auth.mode = AuthMode::Delegated,
            vm: same,
            initiator: Some("MGMT01"),
            kind: ErrorKind::NoCredentials,
            texts: &[
                "No credentials are available in the security package",
                "0x8009030E",
            ],
            at_destination: true,
        },
        Case {
            name: "CredSSP initiated remotely, refused on the source",
            dst: |_| {},
            src: none,
            vm: same,
            initiator: Some("MGMT01"),
            kind: ErrorKind::NoCredentials,
            texts: &["0x8009030E"],
            at_destination: false,
        },
        Case {
            name: "Kerberos without delegation",
            dst: |c| c.auth.mode = AuthMode::Delegated,
            src: |c| c.auth.mode = AuthMode::Delegated,
            vm: same,
            initiator: Some("MGMT01"),
            kind: ErrorKind::CredentialsNotRecognized,
            texts: &["0x8009030D"],
            at_destination: true,
        },
        Case {
            name: "wrong credential",
            dst: |c| c.auth.default_secret = "another".into(),
            src: none,
            vm: same,
            initiator: None,
            kind: ErrorKind::CredentialsNotRecognized,
            texts: &[
                "The credentials supplied to the package were not recognized",
                "0x8009030D",
            ],
            at_destination: true,
        },
        Case {
            name: "migration limit of 0",
            dst: |c| c.max_migrations = 0,
            src: none,
            vm: same,
            initiator: None,
            kind: ErrorKind::LimitReached,
            texts: &["migration limit \"0\" was reached"],
            at_destination: true,
        },
    ];
    for case in cases {
        let src = host("HV01", case.src);
        let dst = host("HV02", case.dst);
        let mut config = vm("ADFS1", 32, 2, 2_000);
        (case.vm)(&mut config);
        src.host.start_vm(config).unwrap();
        let mut req = request("ADFS1", &dst, MigrationParams::default());
        req.initiator = case.initiator.map(String::from);
        let report = src.host.migrate(req).unwrap().wait();
        assert_eq!(report.info.status, Status::Failed, "{}", case.name);
        let error = report.error.clone().unwrap();
        assert_eq!(error.kind, case.kind, "{}: {}", case.name, error.message);
        for text in case.texts {
            assert!(
                error.message.contains(text),
                "{}: {:?} not in {}",
                case.name,
                text,
                error.message
            );
        }
        assert!(
            error.message.contains(&error.hresult()),
            "{}: HRESULT in {}",
            case.name,
            error.message
        );
        assert_eq!(
            report.info.error_desc.as_deref(),
            Some(error.message.as_str())
        );
        assert_eq!(report.info.ram.normal, 0, "{}: no page moved", case.name);
        assert_runs_on_source(&src, "ADFS1");
        assert!(src.notices.all().iter().any(|n| matches!(n, Notice::MigrationFailed { role: Role::Source, error: e, .. } if e.kind == case.kind)), "{}", case.name);
        if case.at_destination {
            wait_for_destination(&dst);
            assert!(
                dst.notices.all().iter().any(|n| matches!(n, Notice::MigrationFailed { role: Role::Destination, error: e, .. } if e.kind == case.kind)),
                "{}: {:?}",
                case.name,
                dst.notices.all()
            );
        }
        assert!(dst.host.list_vms().is_empty(), "{}", case.name);
        assert_eq!(
            dst.host.active_migrations(),
            0,
            "{}: reservation freed",
            case.name
        );
        src.host.shutdown();
        dst.host.shutdown();
    }

    // The fixes the playbooks apply make the same migration pass.
    let root = shared.path().to_path_buf();
    let src = host("HV01", |c| c.shared_storage = Some(root));
    let dst = host("HV02", |c| c.switches = vec!["external".into()]);
    let mut config = vm("ADFS1", 32, 2, 2_000);
    config.disk = Some(Disk {
        path: "ADFS1/disk.vhdx".into(),
        shared: true,
        size_mib: 1,
    });
    src.host.start_vm(config).unwrap();
    let failed = src
        .host
        .migrate(request("ADFS1", &dst, MigrationParams::default()))
        .unwrap()
        .wait();
    assert_eq!(failed.error.unwrap().kind, ErrorKind::SwitchMissing);
    dst.host
        .update_config("switch", "External", |c| c.switches.push("External".into()));
    let failed = src
        .host
        .migrate(request("ADFS1", &dst, MigrationParams::default()))
        .unwrap()
        .wait();
    assert_eq!(failed.error.unwrap().kind, ErrorKind::SharedStorageMissing);
    let root = shared.path().to_path_buf();
    dst.host
        .update_config("shared_storage", "created", move |c| {
            c.shared_storage = Some(root)
        });
    let ok = src
        .host
        .migrate(request("ADFS1", &dst, MigrationParams::default()))
        .unwrap()
        .wait();
    assert_eq!(ok.info.status, Status::Completed, "{:?}", ok.error);
    assert!(dst
        .notices
        .all()
        .iter()
        .any(|n| matches!(n, Notice::SettingChanged { setting, .. } if setting == "switch")));
}

#[test]
fn a_closed_listener_refuses_the_connection() {
    let src = host("HV01", |_| {});
    let dst = host("HV02", |_| {});
    dst.host.close_listener();
    src.host.start_vm(vm("ADFS1", 8, 1, 1_000)).unwrap();
    let report = src
        .host
        .migrate(request("ADFS1", &dst, MigrationParams::default()))
        .unwrap()
        .wait();
    let error = report.error.unwrap();
    assert_eq!(error.kind, ErrorKind::ConnectionRefused);
    assert!(
        error.message.contains("actively refused it. (0x8007274D)"),
        "{}",
        error.message
    );
    assert_runs_on_source(&src, "ADFS1");
    // Opening the listener again (the playbook's fix) lets it through.
    let mut config = dst.host.config();
    config.listen = Some(dst.addr);
    dst.host.update_config("listener", "open", |c| *c = config);
    dst.host.open_listener().unwrap();
    let report = src
        .host
        .migrate(request("ADFS1", &dst, MigrationParams::default()))
        .unwrap()
        .wait();
    assert_eq!(report.info.status, Status::Completed, "{:?}", report.error);
}

/// A destination asked through the control API (`preflight`) answers what
/// the migration itself would, reserves nothing and moves no page.
#[test]
fn asking_a_destination_moves_nothing_and_gives_the_migrations_answer() {
    use migrate_core::control::{ControlClient, ControlError, Setting};
    let serve = |name: &str, tweak: fn(&mut HostConfig)| {
        let h = host(name, |c| {
            c.control = "127.0.0.1:0".parse().unwrap();
            tweak(c);
        });
        let server = h.host.serve_control().unwrap();
        let client = ControlClient::connect(server.addr, crate::TEST_SECRET).unwrap();
        (h, server, client)
    };
    let (src, _s1, mut src_api) = serve("pf-src", none);
    src.host.start_vm(vm("APP1", 256, 0, 0)).unwrap();
    let config = src_api.vm_config("app1").unwrap();
    assert_eq!(config.name, "APP1");

    // A fit destination: the node it would use, and nothing changes on it.
    let (dst, _s2, mut api) = serve("pf-ok", none);
    let first = api.preflight(&config).unwrap();
    assert_eq!(first.host, "pf-ok");
    assert_eq!(first.numa_node, Some(0));
    let again = api.preflight(&config).unwrap();
    assert_eq!(first, again, "a pre-flight reserves nothing");
    assert!(dst.host.list_vms().is_empty());
    assert_eq!(dst.host.active_migrations(), 0);

    // Each refusal is the migration's own (kind and text).
    let refused = |api: &mut ControlClient| match api.preflight(&config) {
        Err(ControlError::Host(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    };
    api.set(Setting::MigrationEnabled { value: false }).unwrap();
    let e = refused(&mut api);
    assert_eq!(e.kind, ErrorKind::MigrationDisabled);
    assert!(e.message.contains("disabled the listener"), "{e:?}");
    api.set(Setting::MigrationEnabled { value: true }).unwrap();
    assert!(api.preflight(&config).is_ok(), "the fix is seen at once");

    let (_small, _s3, mut small) = serve("pf-small", |c| c.memory_mib = 128);
    assert_eq!(refused(&mut small).kind, ErrorKind::OutOfMemory);
    let (_sw, _s4, mut switches) = serve("pf-switch", |c| c.switches = vec!["external".into()]);
    let e = refused(&mut switches);
    assert_eq!(e.kind, ErrorKind::SwitchMissing);
    let (_busy, _s5, mut busy) = serve("pf-busy", |c| c.max_migrations = 0);
    assert_eq!(refused(&mut busy).kind, ErrorKind::LimitReached);
    // A VM that is not there is named.
    match src_api.vm_config("NOPE") {
        Err(ControlError::Host(e)) => assert_eq!(e.kind, ErrorKind::VmNotFound),
        other => panic!("{other:?}"),
    }
}
