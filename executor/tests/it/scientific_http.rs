//! `python-scientific` over HTTP against the real executor binary loading
//! both runtimes: `GET /runtimes` lists it with its packages and its own
//! limits, a request selects it by `runtime`, a plot comes back as a PNG
//! file, and an unknown runtime is a 422 naming the available ones.

use base64::Engine as _;
use serde_json::{Value, json};

#[tokio::test]
async fn both_runtimes_serve_side_by_side_and_a_plot_comes_back() {
    let ex = testkit::executor("sci-http")
        .env("EXECUTOR_RUNTIMES", "python,python-scientific")
        .ready()
        .await;
    let runtimes: Value = serde_json::from_slice(&ex.get("/runtimes").await.body).unwrap();
    let list = runtimes["runtimes"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["python", "python-scientific"]);
    let sci = &list[1];
    assert_eq!(sci["default"], false);
    assert!(sci["version"].as_str().unwrap().starts_with("3.15"), "{sci}");
    for package in ["numpy", "pandas", "scipy", "matplotlib", "scikit-learn"] {
        assert!(sci["packages"][package].is_string(), "{package}: {sci}");
    }
    assert_eq!(sci["limits"]["default"]["memory_bytes"], 256 << 20);
    assert_eq!(list[0]["limits"]["default"]["memory_bytes"], 128 << 20);

    let plot = "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.show()\nprint('plotted')";
    let r = ex
        .post_json("/execute", &json!({"runtime": "python-scientific", "code": plot}))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["stdout"], "plotted\n");
    assert!(
        body["runtime"]["version"].as_str().unwrap().starts_with("3.15"),
        "{body}"
    );
    let file = &body["files"][0];
    assert_eq!(
        (file["path"].as_str(), file["encoding"].as_str()),
        (Some("figure-1.png"), Some("base64"))
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(file["content"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(file["size"], png.len());

    // The default runtime is still `python`, which has no numpy.
    let r = ex.post_json("/execute", &json!({"code": "import numpy"})).await;
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["status"], "error", "{body}");
    assert!(
        body["stderr"].as_str().unwrap().contains("ModuleNotFoundError"),
        "{body}"
    );

    let r = ex
        .post_json("/execute", &json!({"runtime": "python-sci", "code": "1"}))
        .await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["error"]["code"], "unknown_runtime", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("python-scientific"),
        "{body}"
    );
}
