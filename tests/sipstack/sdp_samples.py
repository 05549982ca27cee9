"""Session descriptions captured from real peers, shared by the SDP and offer/answer tests."""

from __future__ import annotations


def crlf(text: str) -> str:
    return "\r\n".join(text.strip().splitlines()) + "\r\n"


# SIPp 3.6.1's built-in uac scenario (sipp -sd uac), keywords filled in.
SIPP_OFFER = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
""")

# baresip 1.0.0 as captured on this machine (g711, g722, opus modules), plus
# the a=rtcp line (RFC 3605) such clients add when RTCP is not on port + 1.
BARESIP_OFFER = crlf("""
v=0
o=- 2204210468 466723998 IN IP4 192.0.2.2
s=-
c=IN IP4 192.0.2.2
t=0 0
a=tool:baresip 1.0.0
m=audio 20002 RTP/AVP 0 8 9 96 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:9 G722/8000
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=rtcp-rsize
a=rtcp:20007 IN IP4 192.0.2.2
a=ssrc:3811941783 cname:sip:1001@127.0.0.1
a=minptime:20
a=ptime:20
""")

# A browser offer (shape of Chrome's createOffer for audio and a data channel).
CHROME_OFFER = crlf("""
v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS 5c7a7e0e-2f06-4b8a-9d6c-9d7b8d0f3c11
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:1840965416 1 udp 2122260223 192.168.1.20 54321 typ host generation 0 network-id 1
a=ice-ufrag:Xq8j
a=ice-pwd:pS1c0m3Lb2o6b9u3YzT4Uq7f
a=ice-options:trickle
a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=sendrecv
a=msid:5c7a7e0e-2f06-4b8a-9d6c-9d7b8d0f3c11 0f8a6c4e-4a65-4a9a-8d7e-1b2c3d4e5f60
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:1001234567 cname:n3E7rVw1b2Yc4d5e
a=ssrc:1001234567 msid:5c7a7e0e-2f06-4b8a-9d6c-9d7b8d0f3c11 0f8a6c4e-4a65-4a9a-8d7e-1b2c3d4e5f60
m=application 9 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 0.0.0.0
a=ice-ufrag:Xq8j
a=ice-pwd:pS1c0m3Lb2o6b9u3YzT4Uq7f
a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:actpass
a=mid:1
a=sctp-port:5000
a=max-message-size:262144
""")
