//! The scheduler's picture of the cluster, laid out for fast scans, and the calls that change it.
//!
//! What the placement loop reads for every node (state, free cpu, free memory, capacity scale,
//! tie hash) lives in parallel vectors indexed by [`NodeId`]; names, capacities and label maps,
//! read only to explain or display, live apart so they do not crowd the cache during a scan.

use crate::labels::LabelIndex;
use crate::score::{name_hash, Scale};
use crate::{ClusterError, Node, NodeId, NodeState, Resources};
use std::collections::{BTreeMap, HashMap};

/// Nodes, their free resources and labels, and where each service's instances are.
///
/// Built by the caller from its store snapshot ([`Cluster::add_node`], then [`Cluster::reserve`]
/// for each existing instance), then asked to [`place`](Cluster::place) new instances. Pure: no
/// I/O, no clock, no global randomness; every decision is a function of this value, the request
/// and the seed.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub(crate) hot: Hot,
    cold: Vec<Cold>,
    by_name: HashMap<String, NodeId>,
    pub(crate) labels: LabelIndex,
    pub(crate) services: Services,
}

/// Per-node data the placement scan reads, one vector per field.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hot {
    pub(crate) states: Vec<NodeState>,
    pub(crate) free_cpu: Vec<u64>,
    pub(crate) free_memory: Vec<u64>,
    pub(crate) scales: Vec<Scale>,
    pub(crate) name_hashes: Vec<u64>,
}

/// Per-node data read only to explain or display.
#[derive(Debug, Clone)]
struct Cold {
    name: String,
    capacity: Resources,
    labels: BTreeMap<String, String>,
}

/// Service names interned to ids, and for each service the nodes holding its instances.
#[derive(Debug, Clone, Default)]
pub(crate) struct Services {
    ids: HashMap<String, usize>,
    on_nodes: Vec<NodeCounts>,
}

/// Instances of one service per node, as `(node index, count)` pairs sorted by node, counts never
/// 0. A sorted vector rather than a map: the placement scan walks it alongside the nodes (a
/// comparison per node, no lookup), and contiguous pairs walk several times faster than a
/// `BTreeMap`'s. Inserting a node shifts at most one entry per node (8 bytes each), which is
/// small next to the scan that precedes it.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeCounts(Vec<(u32, u32)>);

impl NodeCounts {
    pub(crate) fn as_slice(&self) -> &[(u32, u32)] {
        &self.0
    }

    fn get(&self, node: u32) -> u32 {
        match self.0.binary_search_by_key(&node, |&(n, _)| n) {
            Ok(at) => self.0[at].1,
            Err(_) => 0,
        }
    }

    /// Adds one instance on `node`. Saturates rather than wraps: four billion instances of one
    /// service on one node do not occur.
    fn add(&mut self, node: u32) {
        match self.0.binary_search_by_key(&node, |&(n, _)| n) {
            Ok(at) => self.0[at].1 = self.0[at].1.saturating_add(1),
            Err(at) => self.0.insert(at, (node, 1)),
        }
    }

    /// Removes one instance from `node`, if there is one.
    fn remove(&mut self, node: u32) {
        if let Ok(at) = self.0.binary_search_by_key(&node, |&(n, _)| n) {
            match self.0[at].1 {
                0 | 1 => {
                    self.0.remove(at);
                }
                _ => self.0[at].1 -= 1,
            }
        }
    }
}

impl Services {
    /// Where `service`'s instances are; None if it never had any.
    pub(crate) fn on_nodes(&self, service: &str) -> Option<&NodeCounts> {
        self.ids.get(service).map(|&id| &self.on_nodes[id])
    }

    fn on_nodes_mut(&mut self, service: &str) -> &mut NodeCounts {
        let next = self.on_nodes.len();
        let id = *self.ids.entry(service.to_owned()).or_insert(next);
        if id == next {
            self.on_nodes.push(NodeCounts::default());
        }
        &mut self.on_nodes[id]
    }

    fn count(&self, node: NodeId, service: &str) -> u32 {
        self.on_nodes(service).map_or(0, |nodes| nodes.get(node.0))
    }
}

impl Cluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Cluster::default()
    }

    /// Adds a node and returns its id. Refuses a duplicate name and a reservation beyond the
    /// capacity (the scheduler never represents an overcommitted node).
    pub fn add_node(&mut self, node: Node) -> Result<NodeId, ClusterError> {
        if self.by_name.contains_key(&node.name) {
            return Err(ClusterError::DuplicateNode(node.name));
        }
        let free = node.capacity.checked_sub(node.reserved).ok_or_else(|| {
            ClusterError::ReservedExceedsCapacity {
                name: node.name.clone(),
                reserved: node.reserved,
                capacity: node.capacity,
            }
        })?;
        let id = NodeId(u32::try_from(self.len()).map_err(|_| ClusterError::TooManyNodes)?);
        self.hot.states.push(node.state);
        self.hot.free_cpu.push(free.cpu_millis);
        self.hot.free_memory.push(free.memory_bytes);
        let capacity = node.capacity;
        let scale = Scale::of(capacity.cpu_millis, capacity.memory_bytes);
        self.hot.scales.push(scale);
        self.hot.name_hashes.push(name_hash(&node.name));
        self.labels.push_node(&node.labels);
        self.by_name.insert(node.name.clone(), id);
        self.cold.push(Cold {
            name: node.name,
            capacity,
            labels: node.labels,
        });
        Ok(id)
    }

    /// Number of nodes, in any state.
    pub fn len(&self) -> usize {
        self.cold.len()
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.cold.is_empty()
    }

    /// The id of the node called `name`.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.by_name.get(name).copied()
    }

    /// A read-only view of one node.
    pub fn node(&self, id: NodeId) -> Option<NodeView<'_>> {
        (id.index() < self.len()).then_some(NodeView { cluster: self, id })
    }

    /// Every node, in id order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeView<'_>> + '_ {
        (0..self.len()).map(|i| NodeView {
            cluster: self,
            id: NodeId(i as u32),
        })
    }

    /// Instances of `service` on `node` (0 for an unknown node or service).
    pub fn instances(&self, node: NodeId, service: &str) -> u32 {
        self.services.count(node, service)
    }

    /// Changes a node's state (liveness, drain). Its reservations stay: a draining node's
    /// instances keep running until they are moved and released.
    pub fn set_state(&mut self, node: NodeId, state: NodeState) -> Result<(), ClusterError> {
        let i = self.check(node)?;
        self.hot.states[i] = state;
        Ok(())
    }

    /// Replaces a node's labels.
    pub fn set_labels(
        &mut self,
        node: NodeId,
        labels: BTreeMap<String, String>,
    ) -> Result<(), ClusterError> {
        let i = self.check(node)?;
        self.labels.set_node(i, &labels);
        self.cold[i].labels = labels;
        Ok(())
    }

    /// Records an instance of `service` reserving `resources` on `node`, whatever the node's
    /// state and labels (this is also how existing instances are restored from a snapshot, and
    /// those may sit on a draining node). Refuses, changing nothing, if it would overcommit.
    pub fn reserve(
        &mut self,
        node: NodeId,
        service: &str,
        resources: Resources,
    ) -> Result<(), ClusterError> {
        let i = self.check(node)?;
        let free = self.free(i);
        if !resources.fits_in(free) {
            return Err(ClusterError::Overcommit {
                name: self.cold[i].name.clone(),
                free,
                wanted: resources,
            });
        }
        self.commit(i, service, resources);
        Ok(())
    }

    /// Reserves for `service` as much of `resources` as node `node` has free (each resource
    /// on its own) and returns what it took: how room that is being made for an instance is
    /// held while the rest of it frees up, so that nothing else takes it meanwhile.
    pub fn reserve_up_to(
        &mut self,
        node: NodeId,
        service: &str,
        resources: Resources,
    ) -> Result<Resources, ClusterError> {
        let i = self.check(node)?;
        let free = self.free(i);
        let take = Resources::new(
            resources.cpu_millis.min(free.cpu_millis),
            resources.memory_bytes.min(free.memory_bytes),
        );
        self.commit(i, service, take);
        Ok(take)
    }

    /// Returns an instance's reservation: the inverse of [`Cluster::reserve`]. Refuses, changing
    /// nothing, if the node holds no instance of `service` or has less than `resources` reserved.
    pub fn release(
        &mut self,
        node: NodeId,
        service: &str,
        resources: Resources,
    ) -> Result<(), ClusterError> {
        let i = self.check(node)?;
        let name = || self.cold[i].name.clone();
        if self.services.count(node, service) == 0 {
            return Err(ClusterError::NotHeld {
                name: name(),
                service: service.to_owned(),
            });
        }
        let reserved = self.cold[i].capacity.saturating_sub(self.free(i));
        if !resources.fits_in(reserved) {
            return Err(ClusterError::ReleaseExceedsReserved {
                name: name(),
                reserved,
                released: resources,
            });
        }
        // Cannot overflow: what is released fits in what is reserved, so free stays ≤ capacity.
        self.hot.free_cpu[i] = self.hot.free_cpu[i].saturating_add(resources.cpu_millis);
        self.hot.free_memory[i] = self.hot.free_memory[i].saturating_add(resources.memory_bytes);
        self.services.on_nodes_mut(service).remove(node.0);
        Ok(())
    }

    /// Takes `resources` from node `i` for `service`. The caller has checked that they fit.
    pub(crate) fn commit(&mut self, i: usize, service: &str, resources: Resources) {
        debug_assert!(resources.fits_in(self.free(i)));
        self.hot.free_cpu[i] = self.hot.free_cpu[i].saturating_sub(resources.cpu_millis);
        self.hot.free_memory[i] = self.hot.free_memory[i].saturating_sub(resources.memory_bytes);
        self.services.on_nodes_mut(service).add(i as u32);
    }

    /// The name of node `i`.
    pub(crate) fn name(&self, i: usize) -> &str {
        &self.cold[i].name
    }

    fn free(&self, i: usize) -> Resources {
        Resources::new(self.hot.free_cpu[i], self.hot.free_memory[i])
    }

    fn check(&self, node: NodeId) -> Result<usize, ClusterError> {
        match node.index() < self.len() {
            true => Ok(node.index()),
            false => Err(ClusterError::UnknownNode(node)),
        }
    }
}

/// One node of a [`Cluster`], read-only.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    cluster: &'a Cluster,
    id: NodeId,
}

impl<'a> NodeView<'a> {
    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The node's name.
    pub fn name(&self) -> &'a str {
        &self.cluster.cold[self.id.index()].name
    }

    /// The node's state.
    pub fn state(&self) -> NodeState {
        self.cluster.hot.states[self.id.index()]
    }

    /// What the node offers in total.
    pub fn capacity(&self) -> Resources {
        self.cluster.cold[self.id.index()].capacity
    }

    /// What is still free.
    pub fn free(&self) -> Resources {
        self.cluster.free(self.id.index())
    }

    /// What is reserved: capacity minus free.
    pub fn reserved(&self) -> Resources {
        self.capacity().saturating_sub(self.free())
    }

    /// The node's labels.
    pub fn labels(&self) -> &'a BTreeMap<String, String> {
        &self.cluster.cold[self.id.index()].labels
    }

    /// Instances of `service` on this node.
    pub fn instances(&self, service: &str) -> u32 {
        self.cluster.instances(self.id, service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn two_nodes() -> (Cluster, NodeId, NodeId) {
        let mut cluster = Cluster::new();
        let a = cluster
            .add_node(Node::new("a", Resources::new(4000, 8 * GIB)))
            .unwrap();
        let b = cluster
            .add_node(Node::new("b", Resources::new(2000, 4 * GIB)))
            .unwrap();
        (cluster, a, b)
    }

    #[test]
    fn duplicate_names_and_overreserved_nodes_are_refused() {
        let (mut cluster, _, _) = two_nodes();
        let err = cluster
            .add_node(Node::new("a", Resources::ZERO))
            .unwrap_err();
        assert_eq!(err, ClusterError::DuplicateNode("a".into()));
        let err = cluster
            .add_node(Node::new("c", Resources::new(1, 1)).reserved(Resources::new(2, 0)))
            .unwrap_err();
        assert!(err.to_string().contains("more than its capacity"), "{err}");
        assert_eq!(cluster.len(), 2);
    }

    #[test]
    fn reserve_refuses_to_overcommit_and_changes_nothing() {
        let (mut cluster, a, _) = two_nodes();
        cluster
            .reserve(a, "web", Resources::new(3000, GIB))
            .unwrap();
        let err = cluster
            .reserve(a, "web", Resources::new(1001, 0))
            .unwrap_err();
        assert!(matches!(err, ClusterError::Overcommit { .. }), "{err}");
        let view = cluster.node(a).unwrap();
        assert_eq!(view.reserved(), Resources::new(3000, GIB));
        assert_eq!(view.instances("web"), 1);
        cluster.reserve(a, "web", Resources::new(1000, 0)).unwrap();
        assert_eq!(cluster.node(a).unwrap().free().cpu_millis, 0);
    }

    #[test]
    fn reserve_up_to_takes_what_is_free_of_each_resource() {
        let (mut cluster, _, b) = two_nodes();
        cluster
            .reserve(b, "web", Resources::new(1500, GIB))
            .unwrap();
        let took = cluster
            .reserve_up_to(b, "batch", Resources::new(1000, GIB))
            .unwrap();
        assert_eq!(took, Resources::new(500, GIB));
        assert_eq!(cluster.node(b).unwrap().free(), Resources::new(0, 2 * GIB));
    }

    #[test]
    fn release_is_the_inverse_of_reserve() {
        let (mut cluster, a, b) = two_nodes();
        let one = Resources::new(500, GIB);
        cluster.reserve(a, "web", one).unwrap();
        cluster.reserve(a, "web", one).unwrap();
        cluster.release(a, "web", one).unwrap();
        assert_eq!(cluster.instances(a, "web"), 1);
        cluster.release(a, "web", one).unwrap();
        assert_eq!(cluster.instances(a, "web"), 0);
        assert_eq!(cluster.node(a).unwrap().reserved(), Resources::ZERO);
        let err = cluster.release(a, "web", one).unwrap_err();
        assert!(err
            .to_string()
            .contains("holds no instance of service `web`"));
        cluster.reserve(b, "db", one).unwrap();
        let err = cluster
            .release(b, "db", Resources::new(501, 0))
            .unwrap_err();
        assert!(matches!(err, ClusterError::ReleaseExceedsReserved { .. }));
        assert_eq!(cluster.instances(b, "db"), 1);
    }

    #[test]
    fn unknown_node_ids_are_refused() {
        let (mut cluster, _, _) = two_nodes();
        let stranger = NodeId(7);
        assert!(cluster.node(stranger).is_none());
        assert_eq!(
            cluster.set_state(stranger, NodeState::Down),
            Err(ClusterError::UnknownNode(stranger))
        );
        assert!(cluster.reserve(stranger, "x", Resources::ZERO).is_err());
    }

    #[test]
    fn views_show_what_was_added() {
        let mut cluster = Cluster::new();
        let id = cluster
            .add_node(
                Node::new("n1", Resources::new(1000, GIB))
                    .label("zone", "a")
                    .state(NodeState::Draining)
                    .reserved(Resources::new(100, 0)),
            )
            .unwrap();
        let view = cluster.node(id).unwrap();
        assert_eq!(view.name(), "n1");
        assert_eq!(view.state(), NodeState::Draining);
        assert_eq!(view.free(), Resources::new(900, GIB));
        assert_eq!(view.labels().get("zone").map(String::as_str), Some("a"));
        assert_eq!(cluster.node_id("n1"), Some(id));
        assert_eq!(cluster.nodes().count(), 1);
    }
}
