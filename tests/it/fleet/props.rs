//! Property: over random policies, every location's bundle holds exactly its credentials —
//! those listed by the tasks that name the location — with their secret values, exactly those
//! tasks, and is readable by that location's identity alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use proptest::prelude::*;
use scopevault::fleet::{bundle::Bundle, publish};
use scopevault::policy::{CredentialKind, Policy};
use scopevault::secret::SecretString;
use scopevault::vault::{Credential, FieldMap};

/// A random fleet: `locs` locations; per task, the locations and credentials it lists.
#[derive(Debug, Clone)]
struct Fleet {
    locs: usize,
    creds: usize,
    tasks: Vec<(BTreeSet<usize>, BTreeSet<usize>)>,
}

fn fleet() -> impl Strategy<Value = Fleet> {
    (1usize..5, 1usize..10).prop_flat_map(|(locs, creds)| {
        let task = (
            proptest::collection::btree_set(0..locs, 0..=locs),
            proptest::collection::btree_set(0..creds, 0..=creds.min(4)),
        );
        proptest::collection::vec(task, 0..12).prop_map(move |tasks| Fleet { locs, creds, tasks })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_bundle_holds_exactly_its_locations_credentials(f in fleet()) {
        let ids: Vec<age::x25519::Identity> =
            (0..f.locs).map(|_| age::x25519::Identity::generate()).collect();
        let mut t = String::from("version = 1\n");
        for (l, id) in ids.iter().enumerate() {
            let _ = writeln!(t, "[locations.l{l}]\nrecipient = \"{}\"", id.to_public());
        }
        for c in 0..f.creds {
            let _ = writeln!(t, "[credentials.c{c}]\nkind = \"token\"\nscopes = [\"api:read\"]");
        }
        for (i, (locs, creds)) in f.tasks.iter().enumerate() {
            let l: Vec<String> = locs.iter().map(|l| format!("\"l{l}\"")).collect();
            let c: Vec<String> = creds.iter().map(|c| format!("\"c{c}\"")).collect();
            let _ = writeln!(
                t,
                "[tasks.t{i}]\nneeds = [\"api:read\"]\ncredentials = [{}]\nlocations = [{}]",
                c.join(", "),
                l.join(", ")
            );
        }
        let policy = Policy::parse(&t, "prop.toml").unwrap();
        let now = time::OffsetDateTime::now_utc();
        let stored: BTreeMap<String, Credential> = (0..f.creds)
            .map(|c| {
                let mut k = Credential::new(CredentialKind::Token, now);
                k.secrets = FieldMap::from_iter([(
                    "token".to_owned(),
                    SecretString::from(format!("value-of-c{c}")),
                )]);
                (format!("c{c}"), k)
            })
            .collect();
        for l in 0..f.locs {
            // The expectation, from the generator's data alone.
            let want_tasks: BTreeSet<String> = f.tasks.iter().enumerate()
                .filter(|(_, (ls, _))| ls.contains(&l))
                .map(|(i, _)| format!("t{i}"))
                .collect();
            let want_creds: BTreeSet<String> = f.tasks.iter()
                .filter(|(ls, _)| ls.contains(&l))
                .flat_map(|(_, cs)| cs.iter().map(|c| format!("c{c}")))
                .collect();
            let (m, bytes) = publish::build(
                &policy, &format!("l{l}"), 1, &stored, now, now + time::Duration::days(1),
            ).unwrap();
            prop_assert_eq!(m.tasks.iter().cloned().collect::<BTreeSet<_>>(), want_tasks.clone());
            prop_assert_eq!(m.credentials.iter().cloned().collect::<BTreeSet<_>>(), want_creds.clone());
            let b = Bundle::parse(&bytes).unwrap();
            let plain = age::decrypt(&ids[l], &b.payload).unwrap();
            let p: serde_json::Value = serde_json::from_slice(&plain).unwrap();
            let got: BTreeSet<String> = p["credentials"].as_object().unwrap().keys().cloned().collect();
            prop_assert_eq!(&got, &want_creds);
            for c in &got {
                prop_assert_eq!(
                    p["credentials"][c]["secrets"]["token"].as_str().unwrap(),
                    format!("value-of-{c}")
                );
            }
            // The policy subset has exactly those tasks and credentials declared.
            let sub = Policy::parse(p["policy"].as_str().unwrap(), "sub").unwrap();
            prop_assert_eq!(sub.tasks().map(|(n, _)| n.to_owned()).collect::<BTreeSet<_>>(), want_tasks);
            prop_assert_eq!(sub.credentials().map(|(n, _)| n.to_owned()).collect::<BTreeSet<_>>(), want_creds);
            prop_assert_eq!(sub.locations().count(), 1);
            // No other location's identity opens it.
            for (o, id) in ids.iter().enumerate() {
                if o != l {
                    prop_assert!(age::decrypt(id, &b.payload).is_err());
                }
            }
            // `scopevault publish` builds from a plan of every location (one pass over the
            // tasks): the same manifest and the same policy subset, byte for byte.
            let plan = publish::Plan::new(&policy);
            let (pm, pbytes) = publish::build_planned(
                &policy, &plan, &format!("l{l}"), 1, &stored, now, now + time::Duration::days(1),
            ).unwrap();
            prop_assert_eq!(&pm.tasks, &m.tasks);
            prop_assert_eq!(&pm.credentials, &m.credentials);
            prop_assert_eq!(&pm.policy_digest, &m.policy_digest);
            let pb = Bundle::parse(&pbytes).unwrap();
            let pplain = age::decrypt(&ids[l], &pb.payload).unwrap();
            let pp: serde_json::Value = serde_json::from_slice(&pplain).unwrap();
            prop_assert_eq!(&pp["policy"], &p["policy"]);
        }
    }
}
