//! Routing by HTTPTrigger, beside [`wasmless_api::address`]'s routing by Service name: a request whose
//! Host names no function goes to the function of the trigger that holds its hostname and the
//! longest path prefix that matches (Ingress's `Prefix`: `/api` matches `/api` and `/api/x`, not
//! `/apix`). A route is held by one trigger, the oldest (then by namespace and name): the same
//! rule the controller states in each trigger's status ([`holders`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;

use wasmless_api::address;
use wasmless_api::function::FunctionKey;
use wasmless_api::trigger::{HttpTrigger, Route, TriggerKey};

/// One valid trigger's claim on a route.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub trigger: TriggerKey,
    pub route: Route,
    pub function: FunctionKey,
    /// Its creation time (seconds since the epoch); the oldest claim holds the route.
    created: i64,
}

impl Claim {
    /// The claim of `trigger`, or the problems that make it claim nothing.
    pub fn of(trigger: &HttpTrigger) -> Result<Self, Vec<String>> {
        let route = trigger.spec.check()?;
        let created = trigger
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(i64::MAX, |t| t.0.as_second());
        Ok(Self {
            trigger: trigger.key(),
            route,
            function: trigger.function(),
            created,
        })
    }

    fn order(&self) -> (i64, &TriggerKey) {
        (self.created, &self.trigger)
    }
}

/// Who holds each route.
#[derive(Clone, Debug, Default)]
pub struct Holders {
    by_route: BTreeMap<Route, Claim>,
}

/// The holder of every claimed route: the oldest claim, then the first by namespace and name.
pub fn holders(claims: impl IntoIterator<Item = Claim>) -> Holders {
    let mut by_route: BTreeMap<Route, Claim> = BTreeMap::new();
    for claim in claims {
        match by_route.get(&claim.route) {
            Some(held) if held.order() <= claim.order() => {}
            _ => {
                by_route.insert(claim.route.clone(), claim);
            }
        }
    }
    Holders { by_route }
}

impl Holders {
    /// The claim holding `route`, if any.
    pub fn holder(&self, route: &Route) -> Option<&Claim> {
        self.by_route.get(route)
    }

    /// The routing table of the held routes.
    pub fn table(&self) -> Table {
        let mut by_host: HashMap<String, Vec<(String, FunctionKey)>> = HashMap::new();
        for (route, claim) in &self.by_route {
            by_host
                .entry(route.host.clone())
                .or_default()
                .push((route.path.clone(), claim.function.clone()));
        }
        for paths in by_host.values_mut() {
            // Longest prefix first.
            paths.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        }
        Table { by_host }
    }
}

/// Hostname to path prefixes (longest first) to functions.
#[derive(Debug, Default)]
pub struct Table {
    by_host: HashMap<String, Vec<(String, FunctionKey)>>,
}

impl Table {
    /// The function for a request's Host header and path, if a trigger routes them.
    pub fn route(&self, host_header: &str, path: &str) -> Option<&FunctionKey> {
        // Most hosts route no trigger: no lowercase copy of the Host for them.
        if self.by_host.is_empty() {
            return None;
        }
        let host = address::hostname(host_header)?.to_ascii_lowercase();
        let paths = self.by_host.get(&host)?;
        paths
            .iter()
            .find(|(prefix, _)| matches(prefix, path))
            .map(|(_, key)| key)
    }

    pub fn len(&self) -> usize {
        self.by_host.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }
}

/// The host's current table, swapped whole when triggers change.
#[derive(Default)]
pub struct Routes {
    table: ArcSwap<Table>,
}

impl Routes {
    pub fn set(&self, table: Table) {
        self.table.store(Arc::new(table));
    }

    /// The function a trigger routes this Host header and path to.
    pub fn route(&self, host_header: &str, path: &str) -> Option<FunctionKey> {
        self.table.load().route(host_header, path).cloned()
    }
}

/// Ingress's `Prefix` match, by whole path segments.
fn matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use wasmless_api::trigger::HttpTriggerSpec;

    fn trigger(ns: &str, name: &str, created: i64, host: &str, path: &str, f: &str) -> HttpTrigger {
        let mut t = HttpTrigger::new(
            ns,
            name,
            HttpTriggerSpec {
                function_name: f.into(),
                host_name: host.into(),
                path: path.into(),
                ..HttpTriggerSpec::default()
            },
        );
        t.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(created).unwrap(),
        ));
        t
    }

    fn resolve(triggers: &[HttpTrigger]) -> (Holders, Table) {
        let holders = holders(triggers.iter().filter_map(|t| Claim::of(t).ok()));
        let table = holders.table();
        (holders, table)
    }

    #[test]
    fn longest_prefix_by_segment_in_the_triggers_namespace() {
        let (_, table) = resolve(&[
            trigger("a", "root", 1, "api.example.com", "", "front"),
            trigger("a", "v1", 2, "api.example.com", "v1", "one"),
            trigger("b", "other", 3, "other.example.com", "/", "front"),
        ]);
        let route = |h: &str, p: &str| table.route(h, p).cloned();
        assert_eq!(
            route("api.example.com", "/v1/x"),
            Some(FunctionKey::new("a", "one"))
        );
        assert_eq!(
            route("API.example.com:8080", "/v1"),
            Some(FunctionKey::new("a", "one"))
        );
        assert_eq!(
            route("api.example.com.", "/v1x"),
            Some(FunctionKey::new("a", "front"))
        );
        assert_eq!(
            route("api.example.com", "/"),
            Some(FunctionKey::new("a", "front"))
        );
        assert_eq!(
            route("other.example.com", "/"),
            Some(FunctionKey::new("b", "front")),
            "the same function name, the trigger's own namespace"
        );
        assert_eq!(route("nothing.example.com", "/"), None);
        assert_eq!(route("[::1]:8080", "/"), None);
    }

    #[test]
    fn the_oldest_claim_holds_a_route() {
        let older = trigger("b", "first", 10, "api.example.com", "/x", "mine");
        let younger = trigger("a", "second", 20, "api.example.com", "x/", "theirs");
        let (holders, table) = resolve(&[younger.clone(), older.clone()]);
        assert_eq!(
            table.route("api.example.com", "/x"),
            Some(&FunctionKey::new("b", "mine"))
        );
        let route = younger.spec.check().unwrap();
        assert_eq!(
            holders.holder(&route).map(|c| &c.trigger),
            Some(&older.key())
        );
        // Created in the same second: by namespace, then name.
        let tie = trigger("a", "tie", 10, "api.example.com", "/x", "theirs");
        let (holders, _) = resolve(&[older.clone(), tie.clone()]);
        assert_eq!(holders.holder(&route).map(|c| &c.trigger), Some(&tie.key()));
        // An invalid trigger claims nothing.
        let bad = trigger("a", "bad", 1, "api.example.com", "/x", "Not-A-Name");
        let (holders, _) = resolve(&[bad, older.clone()]);
        assert_eq!(
            holders.holder(&route).map(|c| &c.trigger),
            Some(&older.key())
        );
    }
}
