//! `audit`: the admin audit trail as the admin server writes it.

use events_admin::{Action, Admin, AuditLog, AuditRecord, Role};

use crate::{assert_code, eventctl, json, server_with_topology, stdout};

#[tokio::test]
async fn audit_lists_the_recorded_actions_oldest_first() {
    let nats = server_with_topology().await;
    let out = eventctl(&nats.url(), &["audit"]).await;
    assert_code(&out, 0);
    assert!(stdout(&out).contains("no audit record"), "{}", stdout(&out));

    let log = AuditLog::new(async_nats::jetstream::new(nats.client().await));
    let who = [
        ("oncall", Role::Operator, Action::Replay),
        ("ops", Role::Admin, Action::Purge),
    ];
    for (n, (id, role, action)) in who.iter().enumerate() {
        let admin = Admin {
            token_id: (*id).to_owned(),
            role: *role,
        };
        let mut record = AuditRecord::new(&admin, *action, format!("dlq/{n}"));
        record.count = n as u64 + 1;
        log.record(&record).await.unwrap();
    }
    let out = eventctl(&nats.url(), &["audit", "--json"]).await;
    assert_code(&out, 0);
    let items = json(&out)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), who.len());
    for (n, (item, (id, role, action))) in items.iter().zip(who).enumerate() {
        assert_eq!(item["token_id"], id);
        assert_eq!(item["role"], role.as_str());
        assert_eq!(item["action"], action.as_str());
        assert_eq!(item["count"].as_u64(), Some(n as u64 + 1));
    }
    let out = eventctl(&nats.url(), &["audit", "--limit", "1"]).await;
    let text = stdout(&out);
    assert!(text.contains("ops") && !text.contains("oncall"), "{text}");
}
