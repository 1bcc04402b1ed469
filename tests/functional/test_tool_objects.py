"""--object and the "id" of --image-opts, in qemu-img and qemu-io, against
the reference: which object types exist, the order of their checks
(type, id, a required property, the id's form, what creating needs), the
JSON form, and --image-opts passing "id" on to the driver."""
import pytest

from conftest import run
from test_img_create import diff, sparse

OBJECTS = [
    'iothread,id=a', 'iothread', 'iothread,id=1a',
    'main-loop,id=a', 'thread-context,id=a', 'authz-list,id=a',
    'authz-listfile,id=a', 'authz-listfile,id=a,filename=x',
    'authz-simple,id=a', 'authz-simple,id=1a', 'authz-simple,id=1a,identity=x',
    'authz-simple,id=a,identity=x',
    'secret_keyring,id=1a', 'secret_keyring', 'pr-manager-helper,id=a',
    'tls-creds-anon,id=a', 'tls-creds-psk,id=a', 'tls-creds-x509,id=1a',
    'throttle-group,id=1a', 'secret,id=1a', 'secret,id=s0',
    'secret,id=s0,data=x', 'nosuchtype,id=a', 'id=a',
    '{"qom-type":"secret","id":"s0","data":"x"}',
    '{"qom-type":"secret","id":"s0"}', '{"qom-type":"iothread","id":"t"}',
    '{"qom-type":"nosuch","id":"t"}', '{bad', '[1]', '{}',
]


@pytest.mark.parametrize('obj', OBJECTS)
def test_img_object(our_qemu_img, ref_qemu_img, tmp_path, obj):
    diff(our_qemu_img, ref_qemu_img, tmp_path,
         ['info', '--object', obj, '-f', 'raw', 's.raw'], sparse)


@pytest.mark.parametrize('obj', ['iothread,id=a', 'authz-simple,id=a',
                                 '{"qom-type":"secret","id":"s0","data":"x"}',
                                 'tls-creds-psk,id=a'])
def test_io_object(our_qemu_io, ref_qemu_io, tmp_path, obj):
    sparse(str(tmp_path))
    res = [run([prog, '--object', obj, '-f', 'raw', '-c', 'quit', 's.raw'],
               cwd=str(tmp_path)) for prog in (ref_qemu_io, our_qemu_io)]
    for r, prog in zip(res, (ref_qemu_io, our_qemu_io)):
        r.err = r.err.replace(prog, 'qemu-io')
    assert [(r.rc, r.out, r.err) for r in res][0] == \
           [(r.rc, r.out, r.err) for r in res][1]


IMAGE_OPTS = [
    'driver=raw,file.filename=s.raw,id=x',
    'driver=file,filename=s.raw,id=x',
    'id=x,driver=raw,file.filename=s.raw',
    'file.filename=s.raw,driver=raw,id=',
    'driver=raw,file.filename=s.raw,id=1x',
]


@pytest.mark.parametrize('opts', IMAGE_OPTS)
@pytest.mark.parametrize('cmd', [['info'], ['info', '--output=json'],
                                 ['map']])
def test_img_image_opts_id(our_qemu_img, ref_qemu_img, tmp_path, cmd, opts):
    diff(our_qemu_img, ref_qemu_img, tmp_path,
         cmd + ['--image-opts', opts], sparse)


@pytest.mark.parametrize('argv', [
    ['--image-opts', 'driver=raw,file.filename=s.raw,id=x', '-c', 'quit'],
    ['-c', 'open -o id=x s.raw'],
    ['-f', 'raw', '-c', 'reopen -o id=x', 's.raw'],
])
def test_io_id(our_qemu_io, ref_qemu_io, tmp_path, argv):
    sparse(str(tmp_path))
    res = []
    for prog in (ref_qemu_io, our_qemu_io):
        r = run([prog] + argv, cwd=str(tmp_path))
        res.append((r.rc, r.out, r.err.replace(prog, 'qemu-io')))
    assert res[1] == res[0]
