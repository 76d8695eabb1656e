//! Where each workload kind keeps its pod spec, and every image in it: containers, init and
//! ephemeral containers, and image volumes.
//!
//! An admitted object arrives as JSON that can be megabytes long (`managedFields`, annotations,
//! status). [`Workload`] reads only the object's name and the container lists of its pod spec,
//! in the same pass that reads the review; serde skips everything else without building values.
//! When the fields it reads have the wrong shape, the review is read again generically (see
//! `review::decode`) with the object as [`Lenient`], its text kept as it is and read by
//! [`Workload::from_json`], whose error says where; no generic value of the object is built.

use std::{borrow::Cow, fmt};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ApiResource, DynamicResourceScope, GroupVersionKind, Resource};
use serde::{Deserialize, Deserializer};

/// The kinds the policy knows, by where their pod spec lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodSpecAt {
    /// Pod: `spec`.
    Spec,
    /// Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, ReplicationController:
    /// `spec.template.spec`.
    Template,
    /// CronJob: `spec.jobTemplate.spec.template.spec`.
    JobTemplate,
    /// PodTemplate: `template.spec`.
    PodTemplate,
}

impl PodSpecAt {
    /// Where `kind` keeps its pod spec, or `None` for a kind the policy does not inspect.
    pub fn of(kind: &GroupVersionKind) -> Option<Self> {
        match (kind.group.as_str(), kind.kind.as_str()) {
            ("", "Pod") => Some(Self::Spec),
            ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
            | ("batch", "Job")
            | ("", "ReplicationController") => Some(Self::Template),
            ("batch", "CronJob") => Some(Self::JobTemplate),
            ("", "PodTemplate") => Some(Self::PodTemplate),
            _ => None,
        }
    }

    /// The field path of the pod spec, as users write it.
    pub fn path(self) -> &'static str {
        match self {
            Self::Spec => "spec",
            Self::Template => "spec.template.spec",
            Self::JobTemplate => "spec.jobTemplate.spec.template.spec",
            Self::PodTemplate => "template.spec",
        }
    }
}

/// The lists of a pod spec that make the node pull an image: the container lists, in the order
/// the kubelet starts them, then the volumes whose source is an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerList {
    Init,
    Regular,
    Ephemeral,
    /// `volumes` entries with an `image` source; the image is its `reference`.
    ImageVolumes,
}

impl ContainerList {
    pub const ALL: [Self; 4] = [
        Self::Init,
        Self::Regular,
        Self::Ephemeral,
        Self::ImageVolumes,
    ];

    pub fn field(self) -> &'static str {
        match self {
            Self::Init => "initContainers",
            Self::Regular => "containers",
            Self::Ephemeral => "ephemeralContainers",
            Self::ImageVolumes => "volumes",
        }
    }
}

/// One container (or image volume) of a pod spec, with where it sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Container<'a> {
    pub at: PodSpecAt,
    pub list: ContainerList,
    /// The index in its list; for an image volume, among all volumes.
    pub index: usize,
    pub name: &'a str,
    /// `None` when the container has no `image` field at all, or the image volume no
    /// `reference`.
    pub image: Option<&'a str>,
}

impl Container<'_> {
    /// The container's field path, e.g. `spec.template.spec.initContainers[0]`.
    pub fn path(&self) -> ContainerPath<'_> {
        ContainerPath(*self)
    }
}

/// Displays a container's field path without allocating until it is written.
pub struct ContainerPath<'a>(Container<'a>);

impl fmt::Display for ContainerPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.0;
        write!(f, "{}.{}[{}]", c.at.path(), c.list.field(), c.index)
    }
}

/// Why an object cannot be read as the kind it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("{0}")]
    Malformed(String),
    #[error("the object has no pod spec at {0}")]
    NoPodSpec(&'static str),
}

/// An admitted object, as far as the policy reads it.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Name, generated name and namespace; the rest of the metadata is never read.
    metadata: ObjectMeta,
    spec: Result<Option<Spec>, ShapeError>,
    /// A PodTemplate's `template`, which sits beside `metadata` rather than under `spec`.
    template: Option<Template>,
}

impl Workload {
    /// Every container of the pod spec at `at`, init containers first, then its image volumes.
    pub fn containers(&self, at: PodSpecAt) -> Result<Vec<Container<'_>>, ShapeError> {
        let spec = self.pod_spec(at)?;
        let containers = ContainerList::ALL
            .into_iter()
            .filter(|list| *list != ContainerList::ImageVolumes)
            .flat_map(|list| {
                spec.list(list)
                    .iter()
                    .enumerate()
                    .map(move |(index, c)| Container {
                        at,
                        list,
                        index,
                        name: &c.name,
                        image: c.image.as_deref(),
                    })
            });
        let image_volumes = spec.volumes.iter().enumerate().filter_map(|(index, v)| {
            let image = v.image.as_ref()?;
            Some(Container {
                at,
                list: ContainerList::ImageVolumes,
                index,
                name: &v.name,
                image: image.reference.as_deref(),
            })
        });
        Ok(containers.chain(image_volumes).collect())
    }

    /// Reads an object's JSON text that may not fit the expected shape, keeping the reason with
    /// its path: the same answer as [`Workload::from_value`], without building a value.
    pub fn from_json(text: &str) -> Self {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        match serde_path_to_error::deserialize::<_, Fields>(&mut deserializer) {
            Ok(fields) => fields.into(),
            Err(error) => Self {
                metadata: ObjectMeta::default(),
                spec: Err(ShapeError::Malformed(describe(&error))),
                template: None,
            },
        }
    }

    /// Reads an object that did not fit the expected shape, keeping the reason with its path.
    pub fn from_value(object: serde_json::Value) -> Self {
        match serde_path_to_error::deserialize::<_, Fields>(object) {
            Ok(fields) => fields.into(),
            Err(error) => Self {
                metadata: ObjectMeta::default(),
                spec: Err(ShapeError::Malformed(describe(&error))),
                template: None,
            },
        }
    }

    fn pod_spec(&self, at: PodSpecAt) -> Result<&Spec, ShapeError> {
        let spec = self.spec.as_ref().map_err(Clone::clone)?;
        if at == PodSpecAt::PodTemplate {
            let found = self.template.as_ref().and_then(|t| t.spec.as_deref());
            return found.ok_or(ShapeError::NoPodSpec(at.path()));
        }
        let found = spec.as_ref().and_then(|spec| match at {
            PodSpecAt::PodTemplate => None,
            PodSpecAt::Spec => Some(spec),
            PodSpecAt::Template => spec.template.as_ref()?.spec.as_deref(),
            PodSpecAt::JobTemplate => {
                let job = spec.job_template.as_ref()?.spec.as_deref()?;
                job.template.as_ref()?.spec.as_deref()
            }
        });
        found.ok_or(ShapeError::NoPodSpec(at.path()))
    }
}

/// Reads the fields the policy needs and skips the rest; a field of the wrong shape fails the
/// whole review, which is then read again the slow way.
impl<'de> Deserialize<'de> for Workload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Fields::deserialize(deserializer).map(Self::from)
    }
}

impl From<Fields> for Workload {
    fn from(fields: Fields) -> Self {
        Self {
            metadata: fields.metadata,
            spec: Ok(fields.spec),
            template: fields.template,
        }
    }
}

/// A workload is a dynamic resource: its kind comes from the request, not from the Rust type.
impl Resource for Workload {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.kind)
    }

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.group)
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.version)
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.api_version)
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.plural)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A workload whose fields may have the wrong shape: read from its JSON text, which is
/// borrowed from the body, never copied into a generic value.
#[derive(Debug, Clone)]
pub struct Lenient(pub Workload);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <&serde_json::value::RawValue>::deserialize(deserializer)?;
        Ok(Self(Workload::from_json(text.get())))
    }
}

/// As [`Workload`]'s.
impl Resource for Lenient {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        Workload::kind(dt)
    }

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        Workload::group(dt)
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        Workload::version(dt)
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        Workload::api_version(dt)
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        Workload::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        self.0.meta()
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.meta_mut()
    }
}

/// The few fields of an object the policy reads. Unknown fields are skipped by serde.
#[derive(Deserialize)]
struct Fields {
    #[serde(default, deserialize_with = "lean_metadata")]
    metadata: ObjectMeta,
    spec: Option<Spec>,
    template: Option<Template>,
}

fn describe(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let json = error.inner();
    let inner = json.to_string();
    // Read from text, the error ends with where; the path says it better.
    let position = format!(" at line {} column {}", json.line(), json.column());
    let inner = inner.strip_suffix(&position).unwrap_or(&inner).to_owned();
    match error.path().to_string().as_str() {
        "." | "" => inner,
        path => format!("{path}: {inner}"),
    }
}

/// The one spec shape that covers every known kind: a pod spec holds containers, a workload
/// spec holds a pod `template`, and a CronJob spec holds a `jobTemplate` whose spec holds a
/// `template`. Field names never collide across these, so one recursive type reads them all.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    containers: Vec<ContainerFields>,
    #[serde(default)]
    init_containers: Vec<ContainerFields>,
    #[serde(default)]
    ephemeral_containers: Vec<ContainerFields>,
    #[serde(default)]
    volumes: Vec<VolumeFields>,
    template: Option<Template>,
    job_template: Option<Template>,
}

impl Spec {
    fn list(&self, list: ContainerList) -> &[ContainerFields] {
        match list {
            ContainerList::Init => &self.init_containers,
            ContainerList::Regular => &self.containers,
            ContainerList::Ephemeral => &self.ephemeral_containers,
            ContainerList::ImageVolumes => &[],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Template {
    spec: Option<Box<Spec>>,
}

#[derive(Debug, Clone, Deserialize)]
struct ContainerFields {
    #[serde(default)]
    name: String,
    image: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct VolumeFields {
    #[serde(default)]
    name: String,
    /// Set only for an image volume; other volume sources are skipped.
    image: Option<ImageSource>,
}

#[derive(Debug, Clone, Deserialize)]
struct ImageSource {
    reference: Option<String>,
}

fn lean_metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Lean {
        name: Option<String>,
        generate_name: Option<String>,
        namespace: Option<String>,
    }
    let lean = Lean::deserialize(deserializer)?;
    Ok(ObjectMeta {
        name: lean.name,
        generate_name: lean.generate_name,
        namespace: lean.namespace,
        ..ObjectMeta::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(json: &str) -> Workload {
        serde_json::from_str(json).unwrap()
    }

    fn kind(group: &str, kind: &str) -> GroupVersionKind {
        GroupVersionKind::gvk(group, "v1", kind)
    }

    #[test]
    fn knows_where_each_kind_keeps_its_pod_spec() {
        let table = [
            (kind("", "Pod"), Some("spec")),
            (kind("apps", "Deployment"), Some("spec.template.spec")),
            (kind("apps", "ReplicaSet"), Some("spec.template.spec")),
            (kind("apps", "StatefulSet"), Some("spec.template.spec")),
            (kind("apps", "DaemonSet"), Some("spec.template.spec")),
            (kind("batch", "Job"), Some("spec.template.spec")),
            (
                kind("", "ReplicationController"),
                Some("spec.template.spec"),
            ),
            (
                kind("batch", "CronJob"),
                Some("spec.jobTemplate.spec.template.spec"),
            ),
            (kind("", "PodTemplate"), Some("template.spec")),
            (kind("", "ConfigMap"), None),
            (kind("example.com", "Deployment"), None),
        ];
        for (gvk, path) in table {
            assert_eq!(PodSpecAt::of(&gvk).map(PodSpecAt::path), path, "{gvk:?}");
        }
    }

    #[test]
    fn lists_init_then_regular_then_ephemeral_containers() {
        let pod = workload(
            r#"{"spec":{"containers":[{"name":"a","image":"x"}],
                "ephemeralContainers":[{"name":"debug","image":"busybox"}],
                "initContainers":[{"name":"i0"},{"name":"i1","image":"y"}]}}"#,
        );
        let listed: Vec<_> = pod
            .containers(PodSpecAt::Spec)
            .unwrap()
            .iter()
            .map(|c| (c.path().to_string(), c.name, c.image))
            .collect();
        assert_eq!(
            listed,
            [
                ("spec.initContainers[0]".to_owned(), "i0", None),
                ("spec.initContainers[1]".to_owned(), "i1", Some("y")),
                ("spec.containers[0]".to_owned(), "a", Some("x")),
                (
                    "spec.ephemeralContainers[0]".to_owned(),
                    "debug",
                    Some("busybox")
                ),
            ]
        );
    }

    #[test]
    fn lists_image_volumes_by_their_index_among_all_volumes() {
        let pod = workload(
            r#"{"spec":{"containers":[{"name":"a","image":"x"}],"volumes":[
                {"name":"scratch","emptyDir":{}},
                {"name":"tools","image":{"reference":"tools:1"}},
                {"name":"bare","image":{"pullPolicy":"Always"}}]}}"#,
        );
        let listed: Vec<_> = pod
            .containers(PodSpecAt::Spec)
            .unwrap()
            .iter()
            .map(|c| (c.path().to_string(), c.name, c.image))
            .collect();
        assert_eq!(
            listed,
            [
                ("spec.containers[0]".to_owned(), "a", Some("x")),
                ("spec.volumes[1]".to_owned(), "tools", Some("tools:1")),
                ("spec.volumes[2]".to_owned(), "bare", None),
            ]
        );
    }

    #[test]
    fn finds_a_pod_templates_spec_beside_its_metadata() {
        let template = workload(
            r#"{"metadata":{"name":"t"},"template":{"spec":{"containers":[{"name":"c","image":"y"}]}}}"#,
        );
        let containers = template.containers(PodSpecAt::PodTemplate).unwrap();
        assert_eq!(
            containers[0].path().to_string(),
            "template.spec.containers[0]"
        );
        assert_eq!(
            workload(r#"{"metadata":{"name":"t"}}"#)
                .containers(PodSpecAt::PodTemplate)
                .unwrap_err(),
            ShapeError::NoPodSpec("template.spec")
        );
    }

    #[test]
    fn follows_a_cron_job_down_to_its_pod_spec() {
        let cron = workload(
            r#"{"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"spec":
                {"containers":[{"name":"c","image":"msalinasc_x"}]}}}}}}"#,
        );
        let containers = cron.containers(PodSpecAt::JobTemplate).unwrap();
        assert_eq!(
            containers[0].path().to_string(),
            "spec.jobTemplate.spec.template.spec.containers[0]"
        );
    }

    #[test]
    fn reports_a_missing_pod_spec() {
        let deployment = workload(r#"{"spec":{"replicas":1}}"#);
        assert_eq!(
            deployment.containers(PodSpecAt::Template).unwrap_err(),
            ShapeError::NoPodSpec("spec.template.spec")
        );
    }

    #[test]
    fn reports_where_the_shape_is_wrong() {
        let object = serde_json::json!({"spec":{"containers":[{"name":"a","image":7}]}});
        assert!(
            serde_json::from_value::<Workload>(object.clone()).is_err(),
            "the fast path refuses it"
        );
        let pod = Workload::from_value(object);
        assert_eq!(
            pod.containers(PodSpecAt::Spec).unwrap_err().to_string(),
            "spec.containers[0].image: invalid type: integer `7`, expected a string"
        );
    }

    #[test]
    fn reads_only_name_and_namespace_of_the_metadata() {
        let pod = workload(
            r#"{"metadata":{"name":"web","namespace":"shop","managedFields":[{"manager":"kubectl"}]}}"#,
        );
        assert_eq!(pod.meta().name.as_deref(), Some("web"));
        assert_eq!(pod.meta().namespace.as_deref(), Some("shop"));
        assert_eq!(pod.meta().managed_fields, None);
    }
}
