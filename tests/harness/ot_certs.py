# SPDX-License-Identifier: Apache-2.0
"""A throwaway PKI for the TLS tests of the oncetest harness."""

import os
import random

from ot_procs import _run


# --------------------------------------------------------------------------
# a throwaway PKI for TLS tests

_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $ENV::ONCETEST_SAN
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
"""


class Certs:
    """Paths of the files make_certs() wrote; each certificate is a
    (cert, key) pair of PEM files, keys mode 0600."""

    def __init__(self, d):
        self.dir = d

    def __repr__(self):
        return '<Certs %s>' % self.dir


def make_certs(basedir):
    """Make basedir/tls with the openssl command (P-256 keys, valid two
    days): a CA (ca.pem) and an unrelated one (other_ca.pem); certificates
    from the CA for servers -- server (DNS:localhost, IP:127.0.0.1),
    server_ip (IP:127.0.0.1 only), elsewhere (DNS:elsewhere.example only)
    -- and a client certificate (client, CN oncetest-client). Takes well
    under a second."""
    d = os.path.join(basedir, 'tls')
    os.makedirs(d, exist_ok=True)
    cnf = os.path.join(d, 'openssl.cnf')
    with open(cnf, 'w') as f:
        f.write(_OPENSSL_CNF)
    env = dict(os.environ, ONCETEST_SAN='DNS:unused')
    c = Certs(d)

    def key_and_csr(name, cn):
        key, csr = os.path.join(d, name + '.key'), os.path.join(d, name + '.csr')
        _run(['openssl', 'req', '-new', '-config', cnf, '-newkey', 'ec',
              '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
              '-keyout', key, '-subj', '/CN=' + cn, '-out', csr],
             env=env, what='openssl req %s' % name)
        os.chmod(key, 0o600)
        return key, csr

    def ca(name, cn):
        key, csr = key_and_csr(name, cn)
        pem = os.path.join(d, name + '.pem')
        _run(['openssl', 'x509', '-req', '-in', csr, '-signkey', key,
              '-days', '2', '-extfile', cnf, '-extensions', 'ca',
              '-out', pem], env=env, what='openssl x509 %s' % name)
        return pem, key

    def leaf(name, cn, issuer, ext, san=None):
        key, csr = key_and_csr(name, cn)
        pem = os.path.join(d, name + '.pem')
        _run(['openssl', 'x509', '-req', '-in', csr, '-CA', issuer[0],
              '-CAkey', issuer[1], '-set_serial',
              str(random.getrandbits(63)), '-days', '2', '-extfile', cnf,
              '-extensions', ext, '-out', pem],
             env=dict(env, ONCETEST_SAN=san or 'DNS:unused'),
             what='openssl x509 %s' % name)
        return pem, key

    ca_pair = ca('ca', 'oncetest CA')
    c.ca = ca_pair[0]
    c.other_ca = ca('other_ca', 'oncetest unrelated CA')[0]
    c.server = leaf('server', 'localhost', ca_pair, 'server',
                    'DNS:localhost,IP:127.0.0.1')
    c.server_ip = leaf('server_ip', '127.0.0.1', ca_pair, 'server',
                       'IP:127.0.0.1')
    c.elsewhere = leaf('elsewhere', 'elsewhere.example', ca_pair, 'server',
                       'DNS:elsewhere.example')
    c.client = leaf('client', 'oncetest-client', ca_pair, 'client')
    return c
