//! Versions and settings written in more than one place must agree.

use e2e::paths;

fn read(path: &str) -> String {
    std::fs::read_to_string(paths::repository().join(path)).unwrap()
}

#[test]
fn the_kind_node_runs_the_kubernetes_version_of_the_local_control_plane() {
    let go_mod = read("e2e/control-plane/kubernetes/go.mod");
    let version = go_mod
        .lines()
        .find_map(|line| line.trim().strip_prefix("k8s.io/kubernetes "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("k8s.io/kubernetes is required in go.mod");
    let kind = read("e2e/kind/cluster.yaml");
    let image = kind
        .lines()
        .find_map(|l| l.trim().strip_prefix("image: "))
        .expect("a node image");
    assert!(
        image.starts_with(&format!("kindest/node:{version}@sha256:")),
        "{image} is not {version}, by digest"
    );
}

#[test]
fn the_image_runs_as_the_user_the_deployment_expects() {
    let (user, group) = e2e::IMAGE_USER.split_once(':').expect("user:group");
    for file in ["Dockerfile", "Dockerfile.binary"] {
        let dockerfile = read(file);
        assert!(
            dockerfile.contains("\nFROM scratch\n"),
            "the runtime stage of {file} is scratch"
        );
        assert!(
            dockerfile.contains(&format!("\nUSER {user}:{group}\n")),
            "{file} runs as {user}:{group}"
        );
    }
    let deployment = read("deploy/base/deployment.yaml");
    assert!(
        deployment.contains(&format!("runAsUser: {user}"))
            && deployment.contains(&format!("runAsGroup: {group}")),
        "the Deployment runs as {user}:{group}"
    );
}

/// The directives of the cluster's Corefile, in the order they are written.
fn corefile_directives() -> Vec<String> {
    let manifest = read("e2e/kind/coredns.yaml");
    let corefile = manifest
        .split_once("Corefile: |\n")
        .expect("coredns.yaml carries a Corefile")
        .1;
    corefile
        .lines()
        .take_while(|line| !line.starts_with("---"))
        // The server block's own lines: indented once more than `.:53 {`.
        .filter(|line| line.starts_with("        ") && !line.starts_with("         "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| *word != "}")
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_coredns_build_links_every_directive_of_the_corefile() {
    let main = read("e2e/kind/coredns/main.go");
    let mut linked: Vec<&str> = main
        .split_once("dnsserver.Directives = []string{")
        .expect("main.go sets dnsserver.Directives")
        .1
        .split_once('}')
        .expect("the list ends")
        .0
        .split(',')
        .map(|item| item.trim().trim_matches('"'))
        .filter(|item| !item.is_empty())
        .collect();
    let mut used = corefile_directives();
    assert!(
        used.len() >= 5,
        "directives read from the Corefile: {used:?}"
    );
    used.sort();
    linked.sort_unstable();
    assert_eq!(
        used, linked,
        "e2e/kind/coredns/main.go links exactly the Corefile's directives"
    );
}
