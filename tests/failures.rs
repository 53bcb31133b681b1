//! Typed stage failures from real PostgreSQL errors: a lost or refused warehouse connection
//! may pass (the subtask runs again), an error in the data does not. Told from the typed
//! error (SQLSTATE, closed connection, socket error), whatever its words.

use dbhaul::model::StageFailure;
use dbhaul::warehouse::{WarehouseError, may_pass};

use crate::common::pg_host;

fn connect() -> postgres::Client {
    postgres::Client::connect(
        &format!("host={} user=postgres dbname=postgres", pg_host()),
        postgres::NoTls,
    )
    .expect("PostgreSQL on 127.0.0.1:5432 (user postgres, trust): run appliance/setup.sh")
}

#[test]
fn a_refused_warehouse_connection_may_pass() {
    let error = postgres::Client::connect(
        "host=127.0.0.1 port=1 user=postgres connect_timeout=5",
        postgres::NoTls,
    )
    .err()
    .expect("nothing listens on port 1");
    assert!(may_pass(&error), "{error}");
}

#[test]
fn a_warehouse_connection_killed_by_an_administrator_may_pass() {
    let mut victim = connect();
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let mut admin = connect();
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    let error = victim
        .query_one("SELECT 1", &[])
        .expect_err("the connection was terminated");
    assert!(may_pass(&error), "{error}");
}

#[test]
fn an_error_in_the_data_does_not_pass_whatever_its_words() {
    let mut client = connect();
    let cases = [
        // A value error whose message speaks of a lost connection: the words do not decide.
        "SELECT 'connection closed: Connection reset, timed out (08006)'::int",
        "SELECT 1 / 0",
        "SELECT * FROM no_such_table_anywhere",
    ];
    for sql in cases {
        let error = client.batch_execute(sql).expect_err("the query fails");
        assert!(!may_pass(&error), "{sql}: {error}");
    }
}

#[test]
fn warehouse_errors_become_stage_failures_by_their_kind() {
    let lost = StageFailure::from(WarehouseError::lost_connection("gone"));
    assert_eq!(lost, StageFailure::Transient("gone".into()));
    let fatal = StageFailure::from(WarehouseError::new("warehouse x: table t does not exist"));
    assert_eq!(
        fatal,
        StageFailure::Fatal("warehouse x: table t does not exist".into())
    );
    assert!(lost.is_retryable() && !fatal.is_retryable());
}
