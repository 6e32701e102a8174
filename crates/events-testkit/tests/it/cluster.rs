//! A three-node cluster: R3 stream, leader kill, failover, rejoin.

use std::time::{Duration, Instant};

use events_testkit::{NatsCluster, unique_name};
use tokio::time::{sleep, timeout};

use crate::{create_stream, message_count, publish_acked, read_back};

#[tokio::test]
async fn r3_stream_fails_over_when_its_leader_is_killed_and_the_node_rejoins() {
    let started = Instant::now();
    let mut cluster = NatsCluster::start(3).await;
    eprintln!("cluster of 3 ready after {:?}", started.elapsed());
    assert_eq!(cluster.size(), 3);
    assert_eq!(cluster.urls().len(), 3);
    for i in 0..3 {
        assert_eq!(cluster.node(i).name(), format!("n{i}"));
    }

    let js = cluster.jetstream().await;
    let name = unique_name("R3");
    create_stream(&js, &name, 3).await;
    for i in 1..=10 {
        publish_acked(&js, format!("{name}.x"), format!("m{i}")).await;
    }
    let leader = cluster.stream_leader(&name).await;
    eprintln!("stream leader: n{leader}");

    cluster.kill(leader);
    let killed = Instant::now();
    // Publish until the stream has a new leader that acks; bounded.
    let seq = timeout(Duration::from_secs(15), async {
        loop {
            let attempt = async {
                js.publish(format!("{name}.x"), "after failover".into())
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())
            };
            match timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(ack)) => break ack.sequence,
                Ok(Err(e)) => eprintln!("publish after leader kill: {e}"),
                Err(_) => eprintln!("publish after leader kill: no ack within 2s"),
            }
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no publish succeeded within 15s of killing the leader\n{}",
            cluster.log_tail((leader + 1) % 3, 30)
        )
    });
    eprintln!(
        "first acked publish {:?} after the leader kill",
        killed.elapsed()
    );
    assert_eq!(seq, 11);
    let new_leader = cluster.stream_leader(&name).await;
    assert_ne!(new_leader, leader);

    let restarted = Instant::now();
    cluster.restart(leader).await;
    eprintln!("killed node healthy again after {:?}", restarted.elapsed());

    // The rejoined node catches up: its replica is reported current.
    let peer = cluster.node(leader).name().to_owned();
    timeout(Duration::from_secs(10), async {
        loop {
            let mut stream = js.get_stream(&name).await.unwrap();
            let info = stream.info().await.unwrap();
            let current = info
                .cluster
                .as_ref()
                .into_iter()
                .flat_map(|c| &c.replicas)
                .any(|r| r.name == peer && r.current && !r.offline);
            if current {
                break;
            }
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("restarted node not a current replica within 10s");

    assert_eq!(message_count(&js, &name).await, 11);
    let all = read_back(&js, &name, 11).await;
    assert_eq!(all.last().unwrap(), "after failover");
    eprintln!("whole test took {:?}", started.elapsed());
}
