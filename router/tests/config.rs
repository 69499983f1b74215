//! The committed example config parses, and bad configs are refused with the field named.

use std::path::Path;

use router::config::NodeConfig;

#[test]
fn example_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/region.toml");
    let config = NodeConfig::load(&path).unwrap();
    assert_eq!(config.region.id, "hangzhou");
    assert_eq!(config.listen.grpc.to_string(), "127.0.0.1:7100");
    assert_eq!(config.storage.max_record_bytes, 1 << 20);
    assert_eq!(config.retention.check_interval_ms, 30_000);
}

fn load(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    format!("{:#}", NodeConfig::load(&path).unwrap_err())
}

#[test]
fn bad_configs_name_the_problem() {
    let err = load("[region]\nid = \"a b\"\ndata_dir = \"/tmp/x\"\n");
    assert!(
        err.contains("[region] id") && err.contains("'a b'"),
        "{err}"
    );
    let err = load(
        "[region]\nid = \"eu\"\ndata_dir = \"/tmp/x\"\n[listen]\ngrpc = \"nonsense\"\nreplication = \"127.0.0.1:0\"\nconsole = \"127.0.0.1:0\"\n",
    );
    assert!(err.contains("grpc"), "{err}");
    let err = load("[region]\nid = \"eu\"\ndata_dir = \"/tmp/x\"\n[storage]\nsegment_bytz = 5\n");
    assert!(err.contains("segment_bytz"), "{err}");
    let err = load("[region]\nid = \"eu\"\n");
    assert!(err.contains("data_dir"), "{err}");
    let err = load(
        "[region]\nid = \"eu\"\ndata_dir = \"/tmp/x\"\n[storage]\nmax_batch_bytes = 2147483648\n",
    );
    assert!(err.contains("max_batch_bytes must be at most"), "{err}");
    let err =
        load("[region]\nid = \"eu\"\ndata_dir = \"/tmp/x\"\n[rocketmq]\ntls_cert = \"a.pem\"\n");
    assert!(err.contains("tls_cert and tls_key go together"), "{err}");
}

#[test]
fn the_storage_engine_is_chosen_and_a_jetstream_one_needs_its_cluster() {
    let base = "[region]\nid = \"eu\"\ndata_dir = \"/tmp/x\"\n[storage]\n";
    let err = load(&format!("{base}engine = \"jetstream\"\n"));
    assert!(err.contains("needs a [storage.jetstream] section"), "{err}");
    let err = load(&format!("{base}engine = \"cassandra\"\n"));
    assert!(err.contains("cassandra"), "{err}");
    let err = load(&format!(
        "{base}engine = \"jetstream\"\n[storage.jetstream]\nservers = []\n"
    ));
    assert!(err.contains("servers: name at least one server"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("js.toml");
    std::fs::write(
        &path,
        format!(
            "{base}engine = \"jetstream\"\n[storage.jetstream]\nservers = [\"nats://10.0.0.1:4222\"]\ntls_ca = \"ca.pem\"\n"
        ),
    )
    .unwrap();
    let config = NodeConfig::load(&path).unwrap();
    let js = config.storage.jetstream.unwrap();
    assert_eq!(js.replicas, 3);
    assert_eq!(
        js.tls_ca,
        Some(dir.path().join("ca.pem")),
        "relative to the file"
    );
}

#[test]
fn replication_examples_parse_with_valid_tasks() {
    for region in ["eu", "us"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../examples/replication/{region}.toml"));
        let config = NodeConfig::load(&path).unwrap();
        assert_eq!(config.region.id, region);
        assert_eq!(config.tasks.len(), 2);
        assert_eq!(config.regions.len(), 2);
        assert_eq!(config.links.len(), 1);
        // Certificate paths are taken from the config file's directory.
        let cert = config.replication.cert.unwrap();
        assert!(
            cert.ends_with(format!("examples/replication/certs/{region}.pem")),
            "{}",
            cert.display()
        );
    }
}

#[test]
fn invalid_tasks_are_refused_naming_task_and_field() {
    let base = "[region]\nid = \"eu\"\ndata_dir = \"/tmp/x\"\n[replication]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n[[regions]]\nname = \"eu\"\n[[regions]]\nname = \"us\"\n[[links]]\nbetween = [\"eu\", \"us\"]\ndial = \"us\"\n";
    let cases = [
        (
            "sources = [\"eu\"]\ntargets = [\"mars\"]\ntopics = \"orders\"\n",
            "field `targets`: unknown region \"mars\"",
        ),
        (
            "sources = [\"eu\"]\ntargets = [\"us\"]\ntopics = \"\"\n",
            "field `topics`",
        ),
        (
            "sources = [\"eu\"]\ntargets = [\"us\"]\ntopics = \"o\"\nmax_records_per_s = 0\n",
            "field `max_records_per_s`",
        ),
        (
            "sources = [\"eu\"]\ntargets = [\"us\"]\ntopics = \"o.*\"\nrename = \"one\"\n",
            "field `rename`",
        ),
    ];
    for (task, expected) in cases {
        let err = load(&format!("{base}[[tasks]]\nname = \"t1\"\n{task}"));
        assert!(
            err.contains("task \"t1\" (tasks[0])") && err.contains(expected),
            "{err}"
        );
    }
    let err = load(
        "[region]\nid = \"eu\"\ndata_dir = \"/tmp/x\"\n[[regions]]\nname = \"eu\"\n[[regions]]\nname = \"us\"\n[[links]]\nbetween = [\"eu\", \"us\"]\n",
    );
    assert!(
        err.contains("[replication] ca, cert and key are required"),
        "{err}"
    );
}

#[test]
fn invalid_topologies_are_refused_naming_the_entry() {
    let base = "[region]\nid = \"eu\"\ndata_dir = \"/tmp/x\"\n[replication]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n[[regions]]\nname = \"eu\"\n[[regions]]\nname = \"us\"\naddress = \"127.0.0.1:7202\"\n[[regions]]\nname = \"ap\"\naddress = \"127.0.0.1:7203\"\n";
    let link = |a: &str, b: &str| format!("[[links]]\nbetween = [\"{a}\", \"{b}\"]\n");
    let task = "[[tasks]]\nname = \"t\"\nsources = [\"eu\"]\ntargets = [\"us\", \"ap\"]\ntopics = \"orders\"\n";
    let cases = [
        (
            link("eu", "mars"),
            "[[links]] 0 (eu - mars): unknown region \"mars\" (not in [[regions]])",
        ),
        (
            format!("{}{}", link("eu", "us"), link("us", "eu")),
            "[[links]] 1 (us - eu): duplicate link: us and eu are already linked",
        ),
        (
            format!("{}kind = \"vpc\"\n", link("eu", "us")),
            "[[links]] 0 (eu - us): a vpc link must name the side that dials out",
        ),
        (
            format!("{}{task}", link("eu", "us")),
            "task \"t\" (tasks[0]): field `targets`: region \"ap\" cannot be reached from \"eu\": no chain of [[links]] joins them",
        ),
        (
            format!(
                "{}[residency]\npass_through = [\"us\"]\n[[residency.rules]]\nname = \"pii\"\ntags = [\"pii\"]\nregions = [\"eu\", \"mars\"]\n",
                link("eu", "us")
            ),
            "[residency] rules[0] (pii): unknown region \"mars\"",
        ),
    ];
    for (extra, expected) in cases {
        let err = load(&format!("{base}{extra}"));
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    }
    let err = load("[region]\nid = \"eu\"\ndata_dir = \"/tmp/x\"\n[[regions]]\nname = \"us\"\n");
    assert!(
        err.contains("region \"eu\" (this node) is not listed in [[regions]]"),
        "{err}"
    );
}

#[test]
fn topology_examples_parse_with_the_same_topology_everywhere() {
    let mut shared = None;
    for region in ["eu", "us", "ap"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../examples/topology/{region}.toml"));
        let config = NodeConfig::load(&path).unwrap();
        assert_eq!(config.region.id, region);
        let topology = config.topology().unwrap();
        assert!(topology.residency.pass_through("us"));
        let lists = (config.regions, config.links, config.residency, config.tasks);
        match &shared {
            None => shared = Some(lists),
            Some(first) => assert_eq!(first, &lists, "{region}.toml differs"),
        }
    }
}
