//! Least privilege against a real server (issue #14): TLS from a test CA, one nkey identity
//! per service with the permissions `eventctl auth init` generates from the shipped
//! `deploy/secure/identities.toml` and `deploy/streams.toml`.
//!
//! Phase 1 asserts denials at the async-nats level: the server's `Permissions Violation`
//! error (reported asynchronously) and the missing reply or ack.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use async_nats::{Client, ConnectErrorKind, Event as NatsEvent};
use events::security::{GeneratedIdentity, IdentitiesSpec, generate, render_auth_conf};
use events::topology::{self, Action, ApplyOptions, TopologySpec};
use events::{DeadLetterFilter, DeadLetters, Event, HandlerError, Publisher, PublisherConfig};
use events::{KvIdempotencyStore, SubjectFilter, Subscriber, handler_fn};
use events::{dlq::PageRequest, dlq::ReplayOptions, idempotency::Idempotent};
use events_testkit::{SecureNatsServer, TestPki};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const STREAMS: &str = include_str!("../../../../deploy/streams.toml");
const IDENTITIES: &str = include_str!("../../../../deploy/secure/identities.toml");
const WAIT: Duration = Duration::from_secs(10);
/// How long a denied request or publish waits for the reply that never comes.
const DENIED_WAIT: Duration = Duration::from_secs(2);
const CATALOG_DURABLE: &str = "catalog-service__auth_user_any";
/// A test identity next to the shipped ones: a consumer that keeps its idempotency marks in
/// the JetStream KV bucket (catalog-service keeps them in its database).
const KV_CONSUMER: &str = "kv-consumer";
const KV_CONSUMER_TOML: &str = r#"
[[identities]]
name = "kv-consumer"
role = "service"
consumes = [{ group = "kv-consumer", filter = "auth.user.*" }]
idempotency_bucket = "EVENTS_IDEMPOTENCY"
"#;

pub(crate) struct Env {
    pub(crate) nats: SecureNatsServer,
    ids: Vec<GeneratedIdentity>,
    topology: TopologySpec,
}

/// A client as one identity, with the server errors it is told about.
struct As {
    client: Client,
    js: jetstream::Context,
    errors: mpsc::UnboundedReceiver<String>,
}

impl As {
    /// Waits for the server's permissions violation naming `subject`.
    async fn violation(&mut self, subject: &str) -> String {
        let want = format!("\"{subject}\"");
        let wait = async {
            while let Some(e) = self.errors.recv().await {
                if e.contains("Permissions Violation") && e.contains(&want) {
                    return e;
                }
            }
            panic!("error channel closed before a violation on {subject}")
        };
        timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("no permissions violation for {subject} within {WAIT:?}"))
    }
}

impl Env {
    /// A secured server with the shipped identities (and [`KV_CONSUMER`]); the operator has
    /// applied the streams.
    pub(crate) async fn start() -> Env {
        Self::start_with(|_| {}).await
    }

    /// [`start`](Self::start) with the generated identities changed by `tweak` first.
    pub(crate) async fn start_with(tweak: impl FnOnce(&mut [GeneratedIdentity])) -> Env {
        let topology = TopologySpec::from_toml(STREAMS, "streams.toml", "dev").unwrap();
        let text = format!("{IDENTITIES}{KV_CONSUMER_TOML}");
        let spec = IdentitiesSpec::from_toml(&text, "identities.toml").unwrap();
        let mut ids = generate(&spec, &topology).unwrap();
        tweak(&mut ids);
        let nats = SecureNatsServer::start(render_auth_conf(&ids)).await;
        let env = Env {
            nats,
            ids,
            topology,
        };
        let op = env.connect("operator").await;
        let report = topology::apply(&op.js, &env.topology, &ApplyOptions::default())
            .await
            .unwrap();
        assert!(report.refused().next().is_none(), "{report:?}");
        env
    }

    pub(crate) fn seed(&self, name: &str) -> &str {
        self.ids
            .iter()
            .find(|i| i.name() == name)
            .unwrap_or_else(|| panic!("no identity {name}"))
            .seed()
    }

    async fn connect(&self, name: &str) -> As {
        let (tx, errors) = mpsc::unbounded_channel();
        let options = self
            .nats
            .connect_options(name, self.seed(name))
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    if let NatsEvent::ServerError(e) = event {
                        let _ = tx.send(e.to_string());
                    }
                }
            });
        let client = timeout(WAIT, options.connect(self.nats.url()))
            .await
            .expect("connect timed out")
            .unwrap_or_else(|e| panic!("connect as {name}: {e}"));
        let js = jetstream::ContextBuilder::new()
            .timeout(DENIED_WAIT)
            .build(client.clone());
        As { client, js, errors }
    }

    /// Messages stored in `stream`, read as the operator.
    pub(crate) async fn stored(&self, stream: &str) -> u64 {
        let op = self.connect("operator").await;
        let mut s = op.js.get_stream(stream).await.unwrap();
        s.info().await.unwrap().state.messages
    }
}

pub(crate) fn event(event_type: &str) -> Event {
    Event::builder(event_type)
        .source("auth-service")
        .organization("org-1")
        .data(&serde_json::json!({ "user_id": "u-1" }))
        .build()
        .unwrap()
}

/// Publishes through JetStream and expects no ack (the server drops a denied publish).
async fn publish_is_denied(who: &mut As, subject: &str) {
    let sent = who.js.publish(subject.to_owned(), "x".into()).await;
    if let Ok(ack) = sent {
        assert!(
            ack.await.is_err(),
            "{subject}: a denied publish was acknowledged"
        );
    }
    who.violation(subject).await;
}

#[tokio::test]
async fn operator_applies_the_streams() {
    let env = Env::start().await;
    let op = env.connect("operator").await;
    let again = topology::apply(&op.js, &env.topology, &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(again.items.len(), env.topology.streams.len(), "{again:?}");
    assert!(
        again.items.iter().all(|i| i.action == Action::Unchanged),
        "{again:?}"
    );
}

#[tokio::test]
async fn tls_client_with_its_identity_connects_and_works() {
    let env = Env::start().await;
    let client = env
        .nats
        .client("auth-service", env.seed("auth-service"))
        .await;
    assert!(client.server_info().tls_required);
    let js = jetstream::new(client);
    let ack = js
        .publish("auth.user.created", "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.stream, "AUTH_EVENTS");
}

#[tokio::test]
async fn plain_text_client_is_refused() {
    let env = Env::start().await;
    let addr = format!("127.0.0.1:{}", env.nats.server().port());
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // INFO first: it says TLS is required.
    let n = timeout(WAIT, socket.read(&mut buf)).await.unwrap().unwrap();
    seen.extend_from_slice(&buf[..n]);
    let info = String::from_utf8_lossy(&seen).into_owned();
    assert!(info.contains("\"tls_required\":true"), "{info}");
    // A plain-text CONNECT and PING never get a PONG: the server closes the connection.
    let _ = socket
        .write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
        .await;
    let rest = timeout(WAIT, async {
        let mut rest = Vec::new();
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return rest,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server kept a plain-text connection open");
    assert!(!String::from_utf8_lossy(&rest).contains("PONG"));
}

#[tokio::test]
async fn client_trusting_another_ca_is_refused() {
    let env = Env::start().await;
    let stranger = TestPki::generate();
    let attempt = async_nats::ConnectOptions::new()
        .add_root_certificates(stranger.ca_file())
        .require_tls(true)
        .nkey(env.seed("operator").to_owned())
        .connection_timeout(Duration::from_secs(3))
        .connect(env.nats.url());
    let err = timeout(WAIT, attempt).await.unwrap().unwrap_err();
    // async-nats reports a failed certificate check as an I/O error of the handshake.
    assert!(
        matches!(err.kind(), ConnectErrorKind::Tls | ConnectErrorKind::Io),
        "{err}"
    );
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn client_without_an_identity_is_refused() {
    let env = Env::start().await;
    let attempt = async_nats::ConnectOptions::new()
        .add_root_certificates(env.nats.pki().ca_file())
        .require_tls(true)
        .connection_timeout(Duration::from_secs(3))
        .connect(env.nats.url());
    let err = timeout(WAIT, attempt).await.unwrap().unwrap_err();
    assert_eq!(
        err.kind(),
        ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );
}

#[tokio::test]
async fn auth_service_publishes_its_domain_through_the_library() {
    let env = Env::start().await;
    let auth = env.connect("auth-service").await;
    let publisher = Publisher::new(auth.client.clone(), PublisherConfig::new("auth-service"))
        .await
        .unwrap();
    let outcome = timeout(WAIT, publisher.publish(&event("auth.user.created")))
        .await
        .unwrap()
        .unwrap();
    assert!(
        format!("{outcome:?}").contains("AUTH_EVENTS"),
        "{outcome:?}"
    );
    assert_eq!(env.stored("AUTH_EVENTS").await, 1);
}

#[tokio::test]
async fn auth_service_cannot_publish_into_another_domain() {
    let env = Env::start().await;
    let mut auth = env.connect("auth-service").await;
    publish_is_denied(&mut auth, "catalog.x.y").await;
    assert_eq!(env.stored("CATALOG_EVENTS").await, 0);
}

#[tokio::test]
async fn auth_service_cannot_delete_a_stream() {
    let env = Env::start().await;
    let mut auth = env.connect("auth-service").await;
    assert!(auth.js.delete_stream("AUTH_EVENTS").await.is_err());
    auth.violation("$JS.API.STREAM.DELETE.AUTH_EVENTS").await;
    let op = env.connect("operator").await;
    assert!(
        op.js.get_stream("AUTH_EVENTS").await.is_ok(),
        "the stream is gone"
    );
}

#[tokio::test]
async fn auth_service_cannot_read_catalog_services_consumer() {
    let env = Env::start().await;
    let catalog = env.connect("catalog-service").await;
    create_catalog_durable(&catalog).await;
    let mut auth = env.connect("auth-service").await;
    let info = auth
        .js
        .get_consumer_from_stream::<pull::Config, _, _>(CATALOG_DURABLE, "AUTH_EVENTS")
        .await;
    assert!(info.is_err(), "consumer info was readable");
    auth.violation(&format!(
        "$JS.API.CONSUMER.INFO.AUTH_EVENTS.{CATALOG_DURABLE}"
    ))
    .await;
    let next = format!("$JS.API.CONSUMER.MSG.NEXT.AUTH_EVENTS.{CATALOG_DURABLE}");
    let pulled = timeout(
        DENIED_WAIT * 2,
        auth.client.request(next.clone(), "1".into()),
    )
    .await;
    assert!(!matches!(pulled, Ok(Ok(_))), "a message was pulled");
    auth.violation(&next).await;
    // Nor can it listen on catalog-service's inbox for what that one pulls.
    let _ = auth.client.subscribe("_INBOX_catalog-service.>").await;
    auth.violation("_INBOX_catalog-service.>").await;
}

#[tokio::test]
async fn auth_service_cannot_publish_dead_letters() {
    let env = Env::start().await;
    let mut auth = env.connect("auth-service").await;
    publish_is_denied(&mut auth, "dlq.auth.user.created").await;
    assert_eq!(env.stored("DLQ_EVENTS").await, 0);
}

#[tokio::test]
async fn catalog_service_cannot_publish_into_the_domain_it_consumes() {
    let env = Env::start().await;
    let mut catalog = env.connect("catalog-service").await;
    publish_is_denied(&mut catalog, "auth.user.created").await;
    assert_eq!(env.stored("AUTH_EVENTS").await, 0);
}

#[tokio::test]
async fn catalog_service_cannot_delete_or_purge() {
    let env = Env::start().await;
    let mut catalog = env.connect("catalog-service").await;
    assert!(
        catalog
            .js
            .delete_consumer_from_stream(CATALOG_DURABLE, "AUTH_EVENTS")
            .await
            .is_err()
    );
    catalog
        .violation(&format!(
            "$JS.API.CONSUMER.DELETE.AUTH_EVENTS.{CATALOG_DURABLE}"
        ))
        .await;
    let purge = catalog
        .client
        .request("$JS.API.STREAM.PURGE.DLQ_EVENTS", "".into());
    assert!(!matches!(timeout(DENIED_WAIT * 2, purge).await, Ok(Ok(_))));
    catalog.violation("$JS.API.STREAM.PURGE.DLQ_EVENTS").await;
}

async fn create_catalog_durable(catalog: &As) {
    create_durable_as_catalog(&catalog.js).await;
}

pub(crate) async fn create_durable_as_catalog(js: &jetstream::Context) {
    Subscriber::builder(js.clone(), SubjectFilter::new("auth.user.*").unwrap())
        .group("catalog-service")
        .build()
        .await
        .expect("catalog-service creates its own durable");
}

#[tokio::test]
async fn catalog_service_consumes_through_its_durable_and_acks() {
    // Its inbox is in its database: no idempotency bucket.
    consume_and_ack_as("catalog-service", false).await;
}

#[tokio::test]
async fn a_consumer_with_an_idempotency_bucket_uses_its_own_keys() {
    consume_and_ack_as(KV_CONSUMER, true).await;
}

/// As `name` (a service consuming `auth.user.*` in the group of its own name): one event is
/// delivered and acked on its durable; with `kv`, through the idempotency helper, whose
/// mark is then there.
async fn consume_and_ack_as(name: &str, kv: bool) {
    let env = Env::start().await;
    let auth = env.connect("auth-service").await;
    let consumer = env.connect(name).await;
    let publisher = Publisher::new(auth.client.clone(), PublisherConfig::new("auth-service"))
        .await
        .unwrap();
    let sent = event("auth.user.created");
    publisher.publish(&sent).await.unwrap();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let inner = handler_fn(move |event: Event, _ctx| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(event.id().to_owned());
            Ok::<_, HandlerError>(())
        }
    });
    let subscriber = Subscriber::builder(
        consumer.js.clone(),
        SubjectFilter::new("auth.user.*").unwrap(),
    )
    .group(name)
    .build()
    .await
    .unwrap();
    let durable = subscriber.durable_name().to_owned();
    let stop = CancellationToken::new();
    let (run, store) = if kv {
        let store = KvIdempotencyStore::for_stream(&consumer.js, "AUTH_EVENTS")
            .await
            .expect("the consumer opens (creates) its idempotency bucket");
        let handler = Idempotent::new(store.clone(), inner);
        (
            tokio::spawn(subscriber.run(handler, stop.clone())),
            Some(store),
        )
    } else {
        (tokio::spawn(subscriber.run(inner, stop.clone())), None)
    };
    let got = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    assert_eq!(got, sent.id());
    // Acked: nothing pending on its own durable (which it may read).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c: jetstream::consumer::PullConsumer = consumer
            .js
            .get_consumer_from_stream(&durable, "AUTH_EVENTS")
            .await
            .unwrap();
        let info = c.info().await.unwrap();
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not acked: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(store) = store {
        use events::IdempotencyStore as _;
        assert!(store.is_processed(&durable, sent.id()).await.unwrap());
    }
    stop.cancel();
    timeout(WAIT, run).await.unwrap().unwrap();
}

#[tokio::test]
async fn dead_letters_go_from_the_consumer_to_the_admin_server_and_back() {
    let env = Env::start().await;
    let auth = env.connect("auth-service").await;
    let catalog = env.connect("catalog-service").await;
    let publisher = Publisher::new(auth.client.clone(), PublisherConfig::new("auth-service"))
        .await
        .unwrap();
    publisher
        .publish(&event("auth.user.created"))
        .await
        .unwrap();
    let subscriber = Subscriber::builder(
        catalog.js.clone(),
        SubjectFilter::new("auth.user.*").unwrap(),
    )
    .group("catalog-service")
    .build()
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let failing = handler_fn(|_event: Event, _ctx| async move {
        Err::<(), _>(HandlerError::permanent(std::io::Error::other(
            "no such catalog",
        )))
    });
    let run = tokio::spawn(subscriber.run(failing, stop.clone()));
    let admin = env.connect("admin-server").await;
    let dlq = DeadLetters::new(admin.js.clone());
    let deadline = tokio::time::Instant::now() + WAIT;
    let letter = loop {
        let page = dlq
            .list(&DeadLetterFilter::default(), PageRequest::default())
            .await
            .unwrap();
        if let Some(first) = page.items.into_iter().next() {
            break first;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.cancel();
    timeout(WAIT, run).await.unwrap().unwrap();
    assert_eq!(letter.consumer.as_deref(), Some(CATALOG_DURABLE));
    let item = dlq
        .replay(letter.sequence, ReplayOptions::execute())
        .await
        .unwrap();
    assert!(format!("{item:?}").contains("Replayed"), "{item:?}");
    assert_eq!(env.stored("AUTH_EVENTS").await, 2);
    assert_eq!(env.stored("DLQ_EVENTS").await, 0);
}
