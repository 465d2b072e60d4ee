"""Apache Kafka from Maven Central, run as a single-node KRaft broker for tests, demo and bench.

Apache Kafka is not packaged for Debian or PyPI; its jars are on Maven Central. ``fetch``
writes a one-dependency Maven project and lets ``mvn dependency:copy-dependencies`` put
``kafka_2.13`` and everything it needs in a cache outside the checkout
(``TOUCHSTREAM_KAFKA_CACHE``, default ``~/.cache/touchstream/kafka/<version>``). ``start_kafka``
formats a KRaft log directory (the broker is its own controller), writes ``server.properties``
with free loopback ports and starts ``kafka.Kafka`` on a small heap. Security is real: a TLS
listener with client certificates, SASL/SCRAM and SASL/PLAIN users, StandardAuthorizer ACLs.

Why 4.4.0 (both it and 3.9.1 pass every test): docs/apache-kafka.md.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from touchstream.errors import TouchstreamError
from touchstream.runtime.processes import BrokerAddress, Child, free_port, wait_for_port

HOST = "127.0.0.1"
PINNED_VERSION = "4.4.0"
# TOUCHSTREAM_KAFKA_VERSION runs another release, to try one (docs/apache-kafka.md)
KAFKA_VERSION = os.environ.get("TOUCHSTREAM_KAFKA_VERSION") or PINNED_VERSION
SLF4J_BINDING = ("org.slf4j", "slf4j-reload4j", "1.7.36")
# Kafka 4 logs through slf4j 2 and log4j2
SLF4J2_BINDING = ("org.apache.logging.log4j", "log4j-slf4j2-impl", "2.24.3")
DEFAULT_HEAP = "384m"
START_TIMEOUT_S = 60.0
INSTALL_HINT = "sudo apt-get install openjdk-17-jre-headless maven (or make test-tools as root)"
# the command-line tools ACLs and SCRAM passwords are changed with: in the kafka_2.13 jar up to
# 3.9, in the kafka-tools artifact from 4.0 (fetched with it)
TOOLS_3 = {"acls": "kafka.admin.AclCommand", "configs": "kafka.admin.ConfigCommand"}
TOOLS_4 = {
    "acls": "org.apache.kafka.tools.AclCommand",
    "configs": "org.apache.kafka.tools.ConfigCommand",
}
TOOLS_DEPENDENCY = """    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <!-- Maven's nearest-wins picks a 1.7 API otherwise, and log4j2's binding needs 2.x -->
      <groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.17</version>
    </dependency>
"""


def major(version: str) -> int:
    return int(version.split(".", 1)[0])


def tool_class(version: str, name: str) -> str:
    return (TOOLS_3 if major(version) < 4 else TOOLS_4)[name]


POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.touchstream</groupId>
  <artifactId>apache-kafka-broker</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
{tools}    <dependency>
      <groupId>{log_group}</groupId><artifactId>{log_artifact}</artifactId>
      <version>{log_version}</version>
    </dependency>
  </dependencies>
</project>
"""

LOG4J = """log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=INFO
"""
# the same for Kafka 4, which logs through log4j2
LOG4J2 = """rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
logger.appinfo.name = org.apache.kafka.common.utils.AppInfoParser
logger.appinfo.level = INFO
"""
VERSION_LINE = re.compile(r"Kafka version: (\S+)")
METADATA_LINE = re.compile(r"metadata\.version (\d+\.\d+)-IV\d+")


class KafkaUnavailable(TouchstreamError):
    """No JDK or Maven to fetch and run Apache Kafka; the message says what to install."""


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    root = os.environ.get("TOUCHSTREAM_KAFKA_CACHE") or str(
        Path.home() / ".cache" / "touchstream" / "kafka"
    )
    return Path(root) / version


def java_binary() -> str:
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not found or not Path(found).exists():
        raise KafkaUnavailable(f"Apache Kafka needs Java 17 or newer: {INSTALL_HINT}")
    return found


def fetch(version: str = KAFKA_VERSION) -> Path:
    """The directory holding Apache Kafka ``version``'s jars, downloaded once with Maven."""
    target = cache_dir(version)
    libs = target / "libs"
    group, artifact, log_version = SLF4J_BINDING if major(version) < 4 else SLF4J2_BINDING
    pom = POM.format(
        version=version,
        tools=TOOLS_DEPENDENCY.format(version=version) if major(version) >= 4 else "",
        log_group=group,
        log_artifact=artifact,
        log_version=log_version,
    )
    # a cache fetched with another project (an older Touchstream) is fetched again
    marker = target / ".complete"
    if (
        marker.exists()
        and (target / "pom.xml").exists()
        and (target / "pom.xml").read_text() == pom
    ):
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise KafkaUnavailable(f"fetching Apache Kafka needs Maven: {INSTALL_HINT}")
    java_binary()
    target.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    (target / "pom.xml").write_text(pom)
    staging = target / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    argv = [mvn, "-B", "-q", "-f", str(target / "pom.xml"), "dependency:copy-dependencies"]
    argv.append(f"-DoutputDirectory={staging}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise KafkaUnavailable(
            f"mvn could not fetch org.apache.kafka:kafka_2.13:{version}:\n"
            + (done.stdout + done.stderr)[-3000:]
        )
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    marker.write_text(version + "\n")
    return libs


def classpath(version: str = KAFKA_VERSION) -> str:
    return str(fetch(version) / "*")


def run_tool(
    main_class: str, *args: str, version: str = KAFKA_VERSION, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """One of Kafka's command-line tools (storage, ACLs, configs) by its main class."""
    argv = [java_binary(), "-Xmx256m", "-cp", classpath(version), main_class, *args]
    env = {**os.environ, "KAFKA_LOG4J_OPTS": ""}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env)


def cluster_id() -> str:
    """A random cluster id as Kafka's ``Uuid.randomUuid`` makes them: never starting with a
    dash, which the storage tool's command line would take for an option (1 start in 64)."""
    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not found.startswith("-"):
            return found


@dataclass(frozen=True)
class Tls:
    """PEM files of the broker's TLS listeners: its CA, certificate and key (PKCS#8)."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class Security:
    """What the broker asks of clients beyond its plaintext listener."""

    tls: Tls | None = None
    # (mechanism, user, password): SCRAM users are created at format time, PLAIN users in JAAS
    users: tuple[tuple[str, str, str], ...] = ()
    acls: bool = False
    # the plaintext listener stays open for the tests' own admin, as User:ANONYMOUS
    super_users: tuple[str, ...] = ("User:ANONYMOUS", "User:admin")


@dataclass
class KafkaBroker(BrokerAddress):
    """A running single-node KRaft broker; ``port`` is its plaintext listener."""

    ports: dict[str, int]
    workdir: Path
    version: str
    child: Child
    log_path: Path
    heap: str = DEFAULT_HEAP
    security: Security = field(default_factory=Security)
    kind: str = "kafka"

    def listener(self, name: str) -> str:
        """HOST:PORT of the listener named ``name`` (PLAINTEXT, SSL, SASL_SSL, ...)."""
        return f"{self.host}:{self.ports[name]}"

    def stop(self) -> None:
        self.child.stop(timeout_s=20)

    def kill(self) -> None:
        """kill -9 of the broker process, as a crashed host would."""
        self.child.kill()

    def restart(self) -> None:
        """Start the broker again on the same ports and log directory."""
        self.child.stop(timeout_s=20)
        self.child = _launch(self.workdir, self.version, self.heap, self.log_path)
        _wait_listening(self)

    def reported_version(self) -> str | None:
        """The release the running broker states in its log: ``Kafka version: X.Y.Z`` (3.x),
        or the ``metadata.version X.Y-IVn`` its controller activated (4.x logs no release
        line, so X.Y only)."""
        text = self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""
        found = VERSION_LINE.findall(text) or METADATA_LINE.findall(text)
        return found[-1] if found else None

    def running_jar(self) -> str | None:
        """The kafka_2.13 jar on the running JVM's class path (its command line)."""
        cmdline = Path(f"/proc/{self.child.pid}/cmdline").read_bytes().split(b"\0")
        classpath = cmdline[cmdline.index(b"-cp") + 1].decode().rstrip("*")
        jars = sorted(p.name for p in Path(classpath).glob("kafka_2.13-*.jar"))
        return jars[0] if jars else None

    def tool(self, main_class: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_tool(main_class, *args, version=self.version)

    def acl(self, *args: str) -> None:
        """``kafka-acls`` against this broker's plaintext listener (a super user)."""
        done = self.tool(
            tool_class(self.version, "acls"), "--bootstrap-server", self.bootstrap, *args
        )
        if done.returncode != 0:
            raise RuntimeError(f"kafka-acls {' '.join(args)}:\n{done.stdout}{done.stderr}")

    def set_scram_password(self, user: str, mechanism: str, password: str) -> None:
        done = self.tool(
            tool_class(self.version, "configs"),
            *("--bootstrap-server", self.bootstrap, "--alter", "--entity-type", "users"),
            *("--entity-name", user, "--add-config", f"{mechanism}=[password={password}]"),
        )
        if done.returncode != 0:
            raise RuntimeError(f"kafka-configs for {user}:\n{done.stdout}{done.stderr}")


def _listeners(security: Security) -> list[str]:
    names = ["PLAINTEXT"]
    if security.users:
        names.append("SASL_PLAINTEXT")
    if security.tls is not None:
        names.append("SSL")
        if security.users:
            names.append("SASL_SSL")
    return names


def _properties(
    workdir: Path, ports: Mapping[str, int], security: Security, extra: Mapping[str, str]
) -> dict[str, str]:
    controller = ports["CONTROLLER"]
    names = [n for n in ports if n != "CONTROLLER"]
    protocol_map = {n: n for n in names} | {"CONTROLLER": "PLAINTEXT"}
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller}",
        "controller.listener.names": "CONTROLLER",
        "listeners": ",".join(f"{n}://{HOST}:{ports[n]}" for n in ports),
        "advertised.listeners": ",".join(f"{n}://{HOST}:{ports[n]}" for n in names),
        "listener.security.protocol.map": ",".join(f"{k}:{v}" for k, v in protocol_map.items()),
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(workdir / "data"),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        # tests start many short-lived groups; Kafka's 3 s default delays each first join
        "group.initial.rebalance.delay.ms": "0",
        "log.flush.interval.messages": "9223372036854775807",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    if security.users:
        mechanisms = sorted({m for m, _, _ in security.users})
        props["sasl.enabled.mechanisms"] = ",".join(mechanisms)
        plain = [(u, p) for m, u, p in security.users if m == "PLAIN"]
        for listener in ("sasl_plaintext", "sasl_ssl"):
            for mechanism in mechanisms:
                prefix = f"listener.name.{listener}.{mechanism.lower()}.sasl.jaas.config"
                if mechanism == "PLAIN":
                    users = " ".join(f'user_{u}="{p}"' for u, p in plain)
                    props[prefix] = (
                        f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
                    )
                else:
                    props[prefix] = (
                        "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                    )
    if security.tls is not None:
        keystore = workdir / "broker-keystore.pem"
        keystore.write_text(security.tls.key.read_text() + security.tls.cert.read_text())
        props |= {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(security.tls.ca),
            "ssl.endpoint.identification.algorithm": "",
            "listener.name.ssl.ssl.client.auth": "required",
            # a client certificate's principal is its CN, as ACLs name it
            "ssl.principal.mapping.rules": "RULE:^CN=([^,]+).*$/$1/,DEFAULT",
        }
    if security.acls:
        props["authorizer.class.name"] = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        props["super.users"] = ";".join(security.super_users)
        props["allow.everyone.if.no.acl.found"] = "false"
    props.update(extra)
    return props


def _launch(workdir: Path, version: str, heap: str, log_path: Path) -> Child:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "JAVA_TOOL"))}
    argv = [
        java_binary(),
        f"-Xmx{heap}",
        f"-Xms{min(64, int(heap.rstrip('m')))}m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{workdir / 'log4j.properties'}",
        f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}",
        "-cp",
        classpath(version),
        "kafka.Kafka",
        str(workdir / "server.properties"),
    ]
    return Child(argv, name="kafka", env=env, log_path=log_path)


def _wait_listening(broker: KafkaBroker) -> None:
    try:
        for port in broker.ports.values():
            wait_for_port(HOST, port, START_TIMEOUT_S, broker.child.proc)
    except (RuntimeError, TimeoutError) as exc:
        broker.child.stop()
        raise RuntimeError(f"Apache Kafka did not start ({exc}):\n{broker.child.tail()}") from exc
    except BaseException:
        # an interruption (Ctrl-C, the demo's SIGTERM) is not a failure to start: the caller
        # must see it as it is, to stop the way it was asked to
        broker.child.stop()
        raise


def start_kafka(
    workdir: Path,
    *,
    version: str = KAFKA_VERSION,
    security: Security | None = None,
    heap: str = DEFAULT_HEAP,
    properties: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> KafkaBroker:
    """Format a fresh KRaft log directory under ``workdir`` and start a broker on it."""
    security = security or Security()
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port(HOST) for name in [*_listeners(security), "CONTROLLER"]}
    props = _properties(workdir, ports, security, properties or {})
    (workdir / "server.properties").write_text(
        "".join(f"{k}={_escape(v)}\n" for k, v in props.items())
    )
    (workdir / "log4j.properties").write_text(LOG4J)
    (workdir / "log4j2.properties").write_text(LOG4J2)
    fmt = ["format", "-t", cluster_id(), "-c", str(workdir / "server.properties")]
    for mechanism, user, password in security.users:
        if mechanism.startswith("SCRAM"):
            fmt += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
    done = run_tool("kafka.tools.StorageTool", *fmt, version=version)
    if done.returncode != 0:
        raise RuntimeError(f"kafka-storage format failed:\n{done.stdout}{done.stderr}")
    log_path = log_path or workdir / "kafka.log"
    broker = KafkaBroker(
        HOST,
        ports["PLAINTEXT"],
        ports,
        workdir,
        version,
        _launch(workdir, version, heap, log_path),
        log_path,
        heap,
        security,
    )
    _wait_listening(broker)
    return broker


def _escape(value: str) -> str:
    # java.util.Properties: a backslash escapes; paths and JAAS lines hold none we need kept
    return value.replace("\\", "\\\\")


def client_security(
    protocol: str,
    *,
    mechanism: str = "",
    username: str = "",
    password: str = "",
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> dict[str, str]:
    """TOUCHSTREAM_* settings (lower-case, without the prefix) for a client of this broker."""
    out = {"kafka_security_protocol": protocol}
    if protocol.startswith("SASL"):
        out |= {
            "kafka_sasl_mechanism": mechanism,
            "kafka_sasl_username": username,
            "kafka_sasl_password": password,
        }
    if ca is not None:
        out["kafka_ssl_cafile"] = str(ca)
    if cert is not None and key is not None:
        out |= {"kafka_ssl_certfile": str(cert), "kafka_ssl_keyfile": str(key)}
    return out
