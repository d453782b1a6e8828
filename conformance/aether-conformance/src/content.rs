//! Content clauses: whole-file writes and reads, ranges, hashes, patches.

use aether_ports::*;

use crate::harness::*;

pub async fn check_write_read_round_trip<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let before = generation(h, &s).await;
    let e = put(h, &s, "/bin.dat", &data).await;
    assert_eq!(e.path, "/bin.dat");
    assert_eq!(e.kind, aether_domain::EntryKind::File);
    assert_eq!(e.size, data.len() as u64);
    assert_eq!(e.content_hash.as_deref(), Some(sha256_hex(&data).as_str()));
    assert_eq!(e.mode, 0o644);
    assert_eq!(e.nlink, 1);
    assert_eq!(
        generation(h, &s).await,
        before + 1,
        "one mutation, one generation"
    );
    assert_eq!(
        e.version,
        before + 1,
        "an entry's version is the generation that wrote it"
    );
    let c = h
        .api
        .read_file(
            &h.owner,
            &s.id,
            ReadFileRequest {
                path: "/bin.dat".into(),
                range: None,
            },
        )
        .await
        .expect("read");
    assert_eq!(&c.data[..], &data[..]);
    assert_eq!(c.entry, e);
    assert_eq!(c.range, None);
    let empty = put(h, &s, "/empty", b"").await;
    assert_eq!(empty.size, 0);
    assert_eq!(read(h, &s, "/empty").await.expect("empty"), b"");
    let e2 = h
        .api
        .write_file(
            &h.owner,
            &s.id,
            WriteFileRequest {
                path: "/bin.dat".into(),
                data: "short".into(),
                mode: Some(0o4755),
                parents: false,
                expected_hash: None,
            },
        )
        .await
        .expect("overwrite");
    assert_eq!(e2.size, 5);
    assert_eq!(e2.mode, 0o4755, "setuid bit kept");
    assert_eq!(read(h, &s, "/bin.dat").await.expect("read"), b"short");
    expect_err(read(h, &s, "/missing").await, Code::NotFound, None);
}

/// A body given as a stream of chunks (an upload too large to hold) stores the same content
/// as one given whole; a stream that fails part-way changes nothing.
pub async fn check_write_streamed_body<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let data: Vec<u8> = (0..(3u32 << 20) + 777).map(|i| (i % 253) as u8).collect();
    let chunks: Vec<Result<bytes::Bytes>> = data
        .chunks(100_000)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let write = |body: FileBody| {
        h.api.write_file(
            &h.owner,
            &s.id,
            WriteFileRequest {
                path: "/streamed".into(),
                data: body,
                mode: None,
                parents: false,
                expected_hash: None,
            },
        )
    };
    let e = write(FileBody::stream(None, futures::stream::iter(chunks)))
        .await
        .expect("streamed write");
    assert_eq!(e.size, data.len() as u64);
    assert_eq!(e.content_hash.as_deref(), Some(sha256_hex(&data).as_str()));
    assert!(read(h, &s, "/streamed").await.expect("read") == data);
    let before = generation(h, &s).await;
    let broken = futures::stream::iter([
        Ok(bytes::Bytes::from(vec![1u8; 2 << 20])),
        Err(ApiError::unavailable("the source went away")),
    ]);
    expect_err(
        write(FileBody::stream(Some(4 << 20), broken)).await,
        Code::Unavailable,
        None,
    );
    assert_eq!(generation(h, &s).await, before, "nothing was applied");
    assert!(
        read(h, &s, "/streamed").await.expect("read") == data,
        "the earlier content stays"
    );
}

pub async fn check_read_ranges<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/r", b"0123456789").await;
    let get = |range| {
        h.api.read_file(
            &h.owner,
            &s.id,
            ReadFileRequest {
                path: "/r".into(),
                range: Some(range),
            },
        )
    };
    let c = get(ByteRange::From {
        start: 2,
        end_inclusive: Some(4),
    })
    .await
    .expect("2-4");
    assert_eq!((&c.data[..], c.range), (&b"234"[..], Some((2, 5))));
    let c = get(ByteRange::From {
        start: 7,
        end_inclusive: None,
    })
    .await
    .expect("7-");
    assert_eq!(&c.data[..], b"789");
    let c = get(ByteRange::From {
        start: 8,
        end_inclusive: Some(100),
    })
    .await
    .expect("8-100 clamps");
    assert_eq!(&c.data[..], b"89");
    let c = get(ByteRange::Suffix(3)).await.expect("-3");
    assert_eq!(&c.data[..], b"789");
    let e = expect_err(
        get(ByteRange::From {
            start: 10,
            end_inclusive: None,
        })
        .await,
        Code::OutOfRange,
        Some(Reason::RangeNotSatisfiable),
    );
    assert_eq!(e.resource_size, Some(10));
    mkdir(h, &s, "/d").await.expect("mkdir");
    expect_err(
        h.api
            .read_file(
                &h.owner,
                &s.id,
                ReadFileRequest {
                    path: "/d".into(),
                    range: None,
                },
            )
            .await,
        Code::FailedPrecondition,
        Some(Reason::IsADirectory),
    );
}

/// A streamed read gives, chunk after chunk, exactly the bytes a whole read gives: of the whole
/// file and of ranges that start, end and cross anywhere; and it fails up front, before any
/// byte, where a whole read fails.
pub async fn check_read_streamed<A: SessionApi>(h: &Harness<A>) {
    use futures::StreamExt;
    let s = new_session(h).await;
    let data: Vec<u8> = (0..(3u32 << 20) + 777)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    put(h, &s, "/big", &data).await;
    let stream = |path: &str, range: Option<ByteRange>| {
        h.api.read_file_chunks(
            &h.owner,
            &s.id,
            ReadFileRequest {
                path: path.into(),
                range,
            },
        )
    };
    let collect = |c: FileChunks| async move {
        let mut all = Vec::new();
        let mut chunks = c.chunks;
        while let Some(chunk) = chunks.next().await {
            all.extend_from_slice(&chunk.expect("every chunk arrives"));
        }
        all
    };
    let whole = stream("/big", None).await.expect("whole stream");
    assert_eq!((whole.range, whole.entry.size), (None, data.len() as u64));
    assert!(collect(whole).await == data, "the whole file, in order");
    let len = data.len() as u64;
    for (start, end) in [
        (0, 1),
        (1, 524_289),
        (524_287, 2_097_153),
        (len - 5, len),
        (100, len),
    ] {
        let c = stream(
            "/big",
            Some(ByteRange::From {
                start,
                end_inclusive: Some(end - 1),
            }),
        )
        .await
        .expect("ranged stream");
        assert_eq!(c.range, Some((start, end)));
        let got = collect(c).await;
        assert!(
            got == data[start as usize..end as usize],
            "bytes {start}..{end}"
        );
    }
    put(h, &s, "/empty", b"").await;
    let empty = stream("/empty", None).await.expect("empty file");
    assert!(collect(empty).await.is_empty());
    expect_err(stream("/missing", None).await, Code::NotFound, None);
    expect_err(
        stream(
            "/big",
            Some(ByteRange::From {
                start: len,
                end_inclusive: None,
            }),
        )
        .await,
        Code::OutOfRange,
        Some(Reason::RangeNotSatisfiable),
    );
    mkdir(h, &s, "/d").await.expect("mkdir");
    expect_err(
        stream("/d", None).await,
        Code::FailedPrecondition,
        Some(Reason::IsADirectory),
    );
}

pub async fn check_expected_hash<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let v1 = put(h, &s, "/f", b"v1").await;
    let stale = sha256_hex(b"something else");
    let write = |data: &'static str, expected: Option<String>| {
        h.api.write_file(
            &h.owner,
            &s.id,
            WriteFileRequest {
                path: "/f".into(),
                data: data.into(),
                mode: None,
                parents: false,
                expected_hash: expected,
            },
        )
    };
    let e = expect_err(
        write("v2", Some(stale.clone())).await,
        Code::Aborted,
        Some(Reason::HashMismatch),
    );
    assert_eq!(e.current_hash, v1.content_hash);
    assert_eq!(read(h, &s, "/f").await.expect("unchanged"), b"v1");
    let v2 = write("v2", v1.content_hash.clone())
        .await
        .expect("matching hash");
    assert_eq!(v2.content_hash.as_deref(), Some(sha256_hex(b"v2").as_str()));
    expect_err(
        write("v3", Some("not-a-hash".into())).await,
        Code::InvalidArgument,
        None,
    );
    expect_err(
        h.api
            .delete_file(
                &h.owner,
                &s.id,
                DeleteFileRequest {
                    path: "/f".into(),
                    expected_hash: Some(stale),
                },
            )
            .await,
        Code::Aborted,
        None,
    );
    h.api
        .delete_file(
            &h.owner,
            &s.id,
            DeleteFileRequest {
                path: "/f".into(),
                expected_hash: v2.content_hash,
            },
        )
        .await
        .expect("delete with the right hash");
}

pub async fn check_write_parents<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let e = expect_err(
        h.api
            .write_file(
                &h.owner,
                &s.id,
                WriteFileRequest {
                    path: "/a/b/c.txt".into(),
                    data: "c".into(),
                    mode: None,
                    parents: false,
                    expected_hash: None,
                },
            )
            .await,
        Code::NotFound,
        None,
    );
    assert!(e.message.contains("/a/b"), "{e}");
    put(h, &s, "/a/b/c.txt", b"c").await;
    assert_eq!(paths(h, &s).await, vec!["/", "/a", "/a/b", "/a/b/c.txt"]);
    assert_eq!(
        stat(h, &s, "/a").await.expect("a").kind,
        aether_domain::EntryKind::Directory
    );
    expect_err(
        h.api
            .write_file(
                &h.owner,
                &s.id,
                WriteFileRequest {
                    path: "/a/b/c.txt/d".into(),
                    data: "d".into(),
                    mode: None,
                    parents: true,
                    expected_hash: None,
                },
            )
            .await,
        Code::FailedPrecondition,
        Some(Reason::NotADirectory),
    );
}

pub async fn check_write_onto_directory<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    mkdir(h, &s, "/d").await.expect("mkdir");
    expect_err(
        h.api
            .write_file(
                &h.owner,
                &s.id,
                WriteFileRequest {
                    path: "/d".into(),
                    data: "x".into(),
                    mode: None,
                    parents: false,
                    expected_hash: None,
                },
            )
            .await,
        Code::FailedPrecondition,
        Some(Reason::IsADirectory),
    );
    expect_err(
        h.api
            .write_file(
                &h.owner,
                &s.id,
                WriteFileRequest {
                    path: "/".into(),
                    data: "x".into(),
                    mode: None,
                    parents: false,
                    expected_hash: None,
                },
            )
            .await,
        Code::FailedPrecondition,
        Some(Reason::IsADirectory),
    );
}

/// Large files are rebuilt as a stream on the server: the same rules must hold there, with
/// edits at the start, across the middle, past the end, and a truncation in one request.
pub async fn check_patch_segments_of_a_large_file<A: SessionApi>(h: &Harness<A>) {
    const LEN: usize = 3 << 20;
    let s = new_session(h).await;
    let mut expected: Vec<u8> = (0..LEN as u32).map(|i| (i % 251) as u8).collect();
    put(h, &s, "/big", &expected).await;
    let edits: Vec<(u64, Vec<u8>)> = vec![
        (0, b"start".to_vec()),
        (LEN as u64 / 2 - 2, vec![7u8; 100_000]),
        (LEN as u64 / 2 + 10, b"later wins".to_vec()),
        (LEN as u64 + 5000, b"past the end".to_vec()),
    ];
    let truncate_to = LEN as u64 + 5004;
    let e = h
        .api
        .patch_segments(
            &h.owner,
            &s.id,
            PatchSegmentsRequest {
                path: "/big".into(),
                segments: edits
                    .iter()
                    .map(|(offset, data)| Segment {
                        offset: *offset,
                        data: data.clone(),
                    })
                    .collect(),
                truncate_to: Some(truncate_to),
                expected_hash: None,
                create: false,
            },
        )
        .await
        .expect("patch a large file");
    for (offset, data) in &edits {
        let (at, end) = (*offset as usize, *offset as usize + data.len());
        if expected.len() < end {
            expected.resize(end, 0);
        }
        expected[at..end].copy_from_slice(data);
    }
    expected.truncate(truncate_to as usize);
    assert_eq!(e.size, truncate_to);
    assert_eq!(
        e.content_hash.as_deref(),
        Some(sha256_hex(&expected).as_str())
    );
    let got = read(h, &s, "/big").await.expect("read");
    assert!(got == expected, "the patched large file differs");

    // Guarded by the hash it had before: refused, naming the hash it has now.
    let guarded = |expected_hash: Option<String>| {
        h.api.patch_segments(
            &h.owner,
            &s.id,
            PatchSegmentsRequest {
                path: "/big".into(),
                segments: vec![Segment {
                    offset: 1,
                    data: b"guarded".to_vec(),
                }],
                truncate_to: None,
                expected_hash,
                create: false,
            },
        )
    };
    let refused = expect_err(
        guarded(Some(sha256_hex(&[0u8; 1]))).await,
        Code::Aborted,
        Some(Reason::HashMismatch),
    );
    assert_eq!(refused.current_hash, e.content_hash);
    assert!(read(h, &s, "/big").await.expect("read") == expected);
    let accepted = guarded(e.content_hash.clone())
        .await
        .expect("guarded by the current hash");
    expected[1..8].copy_from_slice(b"guarded");
    assert_eq!(
        accepted.content_hash.as_deref(),
        Some(sha256_hex(&expected).as_str())
    );
}

pub async fn check_patch_segments<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/p", b"hello world").await;
    let patch = |segments: Vec<(u64, &[u8])>, truncate_to, create| {
        h.api.patch_segments(
            &h.owner,
            &s.id,
            PatchSegmentsRequest {
                path: "/p".into(),
                segments: segments
                    .into_iter()
                    .map(|(offset, d)| Segment {
                        offset,
                        data: d.to_vec(),
                    })
                    .collect(),
                truncate_to,
                expected_hash: None,
                create,
            },
        )
    };
    let e = patch(vec![(0, b"J"), (6, b"W")], None, false)
        .await
        .expect("patch");
    assert_eq!(read(h, &s, "/p").await.expect("read"), b"Jello World");
    assert_eq!(e.size, 11);
    assert_eq!(
        e.content_hash.as_deref(),
        Some(sha256_hex(b"Jello World").as_str())
    );
    patch(vec![(13, b"!")], None, false)
        .await
        .expect("past the end");
    assert_eq!(read(h, &s, "/p").await.expect("read"), b"Jello World\0\0!");
    let e = patch(vec![], Some(5), false).await.expect("truncate");
    assert_eq!(e.size, 5);
    assert_eq!(read(h, &s, "/p").await.expect("read"), b"Jello");
    patch(vec![], Some(7), false).await.expect("extend");
    assert_eq!(read(h, &s, "/p").await.expect("read"), b"Jello\0\0");
    h.api
        .patch_segments(
            &h.owner,
            &s.id,
            PatchSegmentsRequest {
                path: "/new".into(),
                segments: vec![Segment {
                    offset: 2,
                    data: b"x".to_vec(),
                }],
                truncate_to: None,
                expected_hash: None,
                create: true,
            },
        )
        .await
        .expect("create by patch");
    assert_eq!(read(h, &s, "/new").await.expect("read"), b"\0\0x");
    expect_err(
        h.api
            .patch_segments(
                &h.owner,
                &s.id,
                PatchSegmentsRequest {
                    path: "/absent".into(),
                    segments: vec![],
                    truncate_to: None,
                    expected_hash: None,
                    create: false,
                },
            )
            .await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api
            .patch_segments(
                &h.owner,
                &s.id,
                PatchSegmentsRequest {
                    path: "/p".into(),
                    segments: vec![Segment {
                        offset: u64::MAX,
                        data: b"x".to_vec(),
                    }],
                    truncate_to: None,
                    expected_hash: None,
                    create: false,
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
}
