//! S3 targets as users set them up: a device with its own certificate, a named profile,
//! clean-up of copied files, the SDK's checksums on custom endpoints, server-side encryption
//! through a proxy, client-side encrypted chunks.

use super::*;

#[test]
fn a_device_with_its_own_certificate_is_trusted_through_ca_bundle() {
    let sandbox = Sandbox::new();
    let (cert, key) = self_signed(&sandbox);
    let moto = s3::start_moto_tls(&cert, &key);
    let endpoint = format!("https://127.0.0.1:{}", moto.port);
    let table = "wh_device";
    pg_hash_table(table, 1000);
    let schema = "wh_device";
    let mut client = fresh_schema(schema);
    warehouse_table(&mut client, schema, table);
    let job_with = |name: &str, target_extra: &str| {
        pg_copy_job(
            &sandbox,
            name,
            &format!("[[tables]]\nname = \"src_pg.{table}\"\n"),
            &stages_with(&endpoint, "device", schema, target_extra, ""),
        )
    };
    // Without the device's certificate, TLS fails, and the error says so.
    let untrusted = job_with("untrusted", "attempts = 1");
    run_with_s3(&sandbox, &untrusted, &endpoint)
        .assert_code(2)
        .assert_stderr(&format!("cannot reach {endpoint}"))
        .assert_stderr("certificate");
    // With it, the bucket is created through a real TLS session and the run goes through.
    let env = s3::s3_env(&endpoint);
    let status = Command::new("aws")
        .args(["--endpoint-url", &endpoint, "--ca-bundle"])
        .arg(&cert)
        .args(["s3", "mb", "s3://device"])
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .status()
        .expect("the aws CLI (appliance/setup.sh installs it)");
    assert!(status.success());
    let trusted = job_with("trusted", &format!("ca_bundle = \"{}\"", cert.display()));
    run_with_s3(&sandbox, &trusted, &endpoint).assert_ok();
    assert_exactly_once(&mut client, schema, table, 1000);
}

#[test]
fn a_named_profile_supplies_the_credentials() {
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("profile");
    let schema = "wh_profile";
    let mut client = small_warehouse(schema);
    let credentials = sandbox.path("credentials");
    std::fs::write(
        &credentials,
        "[SnowballEdge]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    let job = small_job(
        &sandbox,
        "profile",
        &stages_with(
            &moto.endpoint(),
            &bucket,
            schema,
            "profile = \"SnowballEdge\"",
            "",
        ),
    );
    // No keys in the environment: only the profile can provide them.
    let mut env: Vec<(String, String)> = s3::s3_env(&moto.endpoint())
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS_KEY") && !k.starts_with("AWS_SECRET"))
        .collect();
    env.retain(|(k, _)| k != "AWS_SHARED_CREDENTIALS_FILE");
    env.push((
        "AWS_SHARED_CREDENTIALS_FILE".into(),
        credentials.display().to_string(),
    ));
    let run = |job: &Path| {
        let output = Command::new(env!("CARGO_BIN_EXE_dbhaul"))
            .args(["run", job.to_str().unwrap(), "--json", "--work-dir"])
            .arg(sandbox.work_dir())
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        Run::from(output)
    };
    run(&job).assert_ok();
    assert_eq!(
        count(&mut client, &format!("SELECT count(*) FROM {schema}.t")),
        2
    );

    let wrong = small_job(
        &sandbox,
        "no-profile",
        &stages_with(
            &moto.endpoint(),
            &bucket,
            schema,
            "profile = \"Nowhere\"",
            "",
        ),
    );
    run(&wrong)
        .assert_code(2)
        .assert_stderr("no AWS credentials")
        .assert_stderr("target.profile");
}

#[test]
fn copied_files_are_cleaned_up_as_configured() {
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("cleanup");
    let schema = "wh_cleanup";
    let mut client = small_warehouse(schema);
    // Defaults: local chunks go once uploaded (the manifest stays); objects stay.
    let job = small_job(
        &sandbox,
        "cleanup",
        &stages_toml(&moto.endpoint(), &bucket, schema, ""),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint()).assert_ok();
    let dir = sandbox.work_dir().join("cleanup/main.t");
    let local: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(local, ["manifest.json"]);
    assert_eq!(s3::list_keys(&moto.endpoint(), &bucket, "").len(), 2);
    // keep_uploaded = false: the objects go once copied and checked.
    let job = small_job(
        &sandbox,
        "cleanup",
        &format!(
            "[files]\nkeep_uploaded = false\n{}",
            stages_toml(&moto.endpoint(), &bucket, schema, "")
        ),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint()).assert_ok();
    assert!(s3::list_keys(&moto.endpoint(), &bucket, "").is_empty());
    assert_eq!(
        count(&mut client, &format!("SELECT count(*) FROM {schema}.t")),
        2
    );
}

#[test]
fn custom_endpoints_get_no_sdk_checksums_unless_asked() {
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("checksum");
    let schema = "wh_checksum";
    small_warehouse(schema);
    let upload = |task: &str, target_extra: &str| {
        let proxy = Proxy::start(moto.port);
        let job = small_job(
            &sandbox,
            task,
            &stages_with(&proxy.endpoint(), &bucket, schema, target_extra, ""),
        );
        run_with_s3(&sandbox, &job, &proxy.endpoint()).assert_ok();
        proxy.captured_text().to_ascii_lowercase()
    };
    // The default for a custom endpoint: plain bodies, no CRC32 header or trailer, which
    // many S3-compatible servers would store as part of the object.
    let sent = upload("checksum-default", "");
    assert!(sent.contains("put /"), "the uploads went through the proxy");
    assert!(!sent.contains("x-amz-checksum-crc32"), "{sent}");
    assert!(!sent.contains("aws-chunked"));
    // Asked for: the SDK's checksums are sent.
    let sent = upload("checksum-asked", "checksum = \"when_supported\"");
    assert!(
        sent.contains("x-amz-checksum-crc32") || sent.contains("x-amz-trailer"),
        "no checksum in the requests"
    );
}

/// `target.server_side_encryption = "aws:kms"` with a key id, through `target.proxy`: the
/// proxy carried every request in proxy form (absolute URLs) with the encryption headers,
/// S3 says each object is encrypted with that key, the rows reach the warehouse; with
/// `aes256` S3 says SSE-S3. With the proxy gone, the run is refused naming the proxy, and
/// nothing is extracted.
#[test]
fn objects_go_up_encrypted_with_kms_through_the_proxy_and_a_dead_proxy_is_named() {
    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/dbhaul-test-key";
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("sse");
    let schema = "wh_sse";
    let mut client = small_warehouse(schema);
    let moto_port: u16 = moto.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = s3::Proxy::start(moto_port);
    let target = |attempts: u32| {
        format!(
            "server_side_encryption = \"aws:kms\"\nkms_key_id = \"{KEY}\"\nproxy = \"{}\"\n\
             attempts = {attempts}",
            proxy.endpoint()
        )
    };
    let job = small_job(
        &sandbox,
        "sse",
        &stages_with(&moto.endpoint(), &bucket, schema, &target(3), ""),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint()).assert_ok();
    assert_eq!(
        count(&mut client, &format!("SELECT count(*) FROM {schema}.t")),
        2
    );

    let captured = proxy.captured_text();
    let chunk_put = format!(
        "PUT {}/{bucket}/exports/sse/main.t/00000001.csv.gz",
        moto.endpoint()
    );
    assert!(
        captured.contains(&chunk_put),
        "no proxy-form {chunk_put}:\n{captured}"
    );
    let lower = captured.to_ascii_lowercase();
    assert!(
        lower.contains("x-amz-server-side-encryption: aws:kms"),
        "{captured}"
    );
    assert!(
        lower.contains(&format!(
            "x-amz-server-side-encryption-aws-kms-key-id: {}",
            KEY.to_ascii_lowercase()
        )),
        "{captured}"
    );
    let keys = s3::list_keys(&moto.endpoint(), &bucket, "exports/sse/");
    assert!(keys.len() >= 2, "{keys:?}");
    for key in &keys {
        let head = s3::head_object(&moto.endpoint(), &bucket, key);
        assert_eq!(
            head.server_side_encryption(),
            Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms),
            "{key}"
        );
        assert_eq!(head.ssekms_key_id(), Some(KEY), "{key}");
    }

    // SSE-S3, without a proxy.
    let sse_s3 = Sandbox::new();
    let job = small_job(
        &sse_s3,
        "sse-s3",
        &stages_with(
            &moto.endpoint(),
            &bucket,
            schema,
            "server_side_encryption = \"aes256\"",
            "",
        ),
    );
    run_with_s3(&sse_s3, &job, &moto.endpoint()).assert_ok();
    let key = "exports/sse-s3/main.t/00000001.csv.gz";
    let head = s3::head_object(&moto.endpoint(), &bucket, key);
    assert_eq!(
        head.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256),
        "{key}"
    );

    proxy.stop();
    let sandbox = Sandbox::new();
    let job = small_job(
        &sandbox,
        "sse-no-proxy",
        &stages_with(&moto.endpoint(), &bucket, schema, &target(1), ""),
    );
    run_with_s3(&sandbox, &job, &moto.endpoint())
        .assert_code(2)
        .assert_stderr(&format!("through the proxy {}", proxy.endpoint()))
        .assert_stderr("check that the proxy runs");
    assert_no_chunks(&sandbox);
}

/// `files.encryption_key_env`: every chunk, kept locally and in S3, is encrypted (the same
/// bytes in both, no gzip to be read), the copy stage decrypts it into the warehouse, and
/// `dbhaul decrypt` gives back the gzip of the CSV; with another key it refuses and leaves
/// no output.
#[test]
fn encrypted_chunks_reach_the_warehouse_and_decrypt_back_only_with_their_key() {
    const KEY: &str = "5f3c9a0e7b21d4c68e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abc";
    let sandbox = Sandbox::new();
    let moto = s3::moto();
    let bucket = moto_bucket("enc");
    let schema = "wh_enc";
    let mut client = small_warehouse(schema);
    let job = small_job(
        &sandbox,
        "enc",
        &format!(
            "[files]\nencryption_key_env = \"CHUNK_KEY\"\nkeep_local = true\n{}",
            stages_toml(&moto.endpoint(), &bucket, schema, "")
        ),
    );
    let mut env = s3::s3_env(&moto.endpoint());
    env.push(("CHUNK_KEY".into(), KEY.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    sandbox
        .run_job_env(&job, &sandbox.work_dir(), &env)
        .assert_ok();
    let rows: Vec<(i64, Option<String>)> = client
        .query(&format!("SELECT id, v FROM {schema}.t ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, [(1, Some("a".to_string())), (2, None)]);

    let dir = sandbox.work_dir().join("enc").join("main.t");
    let local = std::fs::read(dir.join("00000001.csv.gz")).unwrap();
    assert!(
        local.starts_with(b"DBHAULE1"),
        "not encrypted: {:?}",
        &local[..16]
    );
    let uploaded = s3::get_object(
        &moto.endpoint(),
        &bucket,
        "exports/enc/main.t/00000001.csv.gz",
    );
    assert_eq!(uploaded, local, "the object is the encrypted file");
    let manifest = manifest(&dir);
    assert!(
        manifest["format"]["encryption"]
            .as_str()
            .unwrap()
            .starts_with("aes-256-gcm"),
        "{manifest}"
    );

    let plain = sandbox.path("plain.csv.gz");
    let decrypt = |key: &str| {
        Command::new(env!("CARGO_BIN_EXE_dbhaul"))
            .args(["decrypt", "--key-env", "CHUNK_KEY", "-o"])
            .arg(&plain)
            .arg(dir.join("00000001.csv.gz"))
            .env("CHUNK_KEY", key)
            .output()
            .unwrap()
    };
    let out = decrypt(KEY);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut csv = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&plain).unwrap()),
        &mut csv,
    )
    .unwrap();
    // The SQLite TEXT column of short values is read in blocks: quoted only where needed.
    assert_eq!(csv, "1,a\n2,\n");

    let out = decrypt(&"00".repeat(32));
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("another files.encryption_key_env"), "{said}");
    assert!(!plain.exists(), "no unchecked output is left");
}
