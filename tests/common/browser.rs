//! Debian's Chromium, headless, driven over WebDriver (`chromedriver`, installed by
//! `appliance/setup.sh`) with fantoccini: the status-page tests click and read the real
//! page as a user's browser renders it. Screenshots go to `target/test-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::s3::{die_with_parent, free_port};

/// A chromedriver process and a browser session; both end on drop.
pub struct Browser {
    pub client: Client,
    pub downloads: PathBuf,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// A new headless Chromium that downloads into `downloads` and accepts the agents'
    /// self-signed certificates.
    pub async fn start(downloads: &Path) -> Browser {
        let port = free_port();
        let mut command = Command::new("chromedriver");
        command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut command);
        let driver = command.spawn().unwrap_or_else(|e| {
            panic!("cannot start chromedriver ({e}); `bash appliance/setup.sh` installs it")
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::create_dir_all(downloads).unwrap();
        let capabilities = json!({
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1400,1100"],
                "prefs": {
                    "download.default_directory": downloads.to_str().unwrap(),
                    "download.prompt_for_download": false,
                }
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Browser {
            client,
            downloads: downloads.to_path_buf(),
            driver,
        }
    }

    /// Paste the controller's admin token into the status page's form, as its user does
    /// the first time (the page keeps it for the tab's life).
    pub async fn sign_in(&self, token: &str) {
        self.wait_until(
            "the admin token form",
            Duration::from_secs(20),
            "return !document.getElementById('token-form').hidden",
        )
        .await;
        self.client
            .find(Locator::Id("token-input"))
            .await
            .unwrap()
            .send_keys(token)
            .await
            .unwrap();
        self.client
            .find(Locator::Css("#token-form button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Run `script` in the page and return its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    pub async fn click(&self, id: &str) {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no #{id} on the page: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Wait until `script` returns true.
    pub async fn wait_until(&self, what: &str, timeout: Duration, script: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(script).await == Value::Bool(true) {
                return;
            }
            if Instant::now() >= deadline {
                let body = self.eval("return document.body.innerText").await;
                panic!("the page did not show {what} within {timeout:?}; it shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// A PNG of the page, kept under `target/test-artifacts/`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = artifacts();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Wait for a finished download named `name`.
    pub async fn downloaded(&self, name: &str) -> String {
        let path = self.downloads.join(name);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{} was not downloaded; the folder holds {:?}",
                path.display(),
                std::fs::read_dir(&self.downloads)
                    .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `target/test-artifacts`, next to the build (CARGO_TARGET_DIR respected).
pub fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/integration-… → target
    exe.ancestors()
        .nth(3)
        .map(|target| target.join("test-artifacts"))
        .unwrap_or_else(|| PathBuf::from("target/test-artifacts"))
}
