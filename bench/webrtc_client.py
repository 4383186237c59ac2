"""A WebRTC viewer for bench/video_outputs.py: aiortc, recvonly, WHEP-style POST of the offer to the page's whep.
receive(url, seconds) yields (time.time() at decode, BGR image, encoded bytes so far) for every decoded frame."""

import asyncio
import time
import urllib.request


def _post(url, sdp):
    request = urllib.request.Request(url, data=sdp.encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/sdp"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.read().decode("utf-8")


def receive(url, seconds):
    import aiortc

    out = []

    async def run():
        pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        done = asyncio.get_event_loop().create_future()

        async def read(track):
            deadline = time.time() + seconds
            while time.time() < deadline:
                frame = await track.recv()
                out.append((time.time(), frame.to_ndarray(format="bgr24"), 0))
            done.set_result(True)

        pc.on("track", lambda track: asyncio.ensure_future(read(track)))
        await pc.setLocalDescription(await pc.createOffer())
        answer = await asyncio.get_event_loop().run_in_executor(None, _post, url, pc.localDescription.sdp)
        await pc.setRemoteDescription(aiortc.RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.wait_for(done, seconds + 20)
        stats = await pc.getStats()
        received = sum(getattr(s, "bytesReceived", 0) for s in stats.values() if s.type == "inbound-rtp")
        await pc.close()
        return received

    received = asyncio.new_event_loop().run_until_complete(run())
    for i, (t, image, _) in enumerate(out):
        yield t, image, received if i == len(out) - 1 else 0
