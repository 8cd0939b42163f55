// viewer.js: the interactive 3D preview (three.js, served by orfeasd from
// static/vendor/: nothing is fetched from the internet). One renderer for
// the page's life; each model replaces the last. Orbit and zoom by mouse,
// touch or keyboard (OrbitControls, and the zoom keys below); it renders on
// demand, not in a loop.
//
// STL, OBJ and PLY are in millimetres with Y the image's up and Z out of
// the image; GLB is in metres with +Y up. Either way the camera is fitted
// to the model's bounding sphere, looking at its front.

import * as THREE from './vendor/three.js';
import { OrbitControls, STLLoader, OBJLoader, PLYLoader, GLTFLoader } from './vendor/addons.js';

// One zoom key press: the distance to the model times 0.8 (or divided).
const ZOOM_STEP = 0.8;

export class Viewer {
  constructor(canvas) {
    this.canvas = canvas;
    // preserveDrawingBuffer: the picture stays readable after it is shown
    // (a right-click "save image", and the browser tests read its pixels).
    // alpha: the canvas is transparent where there is no model, so the
    // panel's own background (light or dark scheme) shows through.
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: true, alpha: true, preserveDrawingBuffer: true });
    this.renderer.setClearColor(0x000000, 0);
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(40, 1, 0.1, 1000);
    this.camera.position.set(0, 0, 3);
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x667788, 2.2));
    const key = new THREE.DirectionalLight(0xffffff, 1.8);
    key.position.set(1, 1.5, 2);
    this.camera.add(key); // the light follows the view while orbiting
    this.scene.add(this.camera);
    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.enableDamping = false;
    // The canvas takes the focus (tabindex in index.html): arrow keys pan,
    // Shift+arrows turn the model (OrbitControls' keys).
    this.controls.listenToKeyEvents(canvas);
    // OrbitControls has no zoom keys: + and - (= and _ too, the same keys
    // unshifted or shifted; the keypad's), Page Up and Page Down. Not with
    // Ctrl, Alt or Meta: Ctrl + is the browser's own page zoom.
    canvas.addEventListener('keydown', (e) => this.zoomKey(e));
    this.controls.addEventListener('change', () => this.render());
    this.model = null;
    this.triangles = 0;
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  resize() {
    const w = this.canvas.clientWidth || 1, h = this.canvas.clientHeight || 1;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.render();
  }

  render() {
    this.renderer.render(this.scene, this.camera);
  }

  zoomKey(e) {
    if (e.ctrlKey || e.altKey || e.metaKey || !this.controls.enableZoom) return;
    // dollyIn(s) multiplies the distance by s (< 1: closer), within the
    // controls' minDistance and maxDistance; dollyOut(s) divides it.
    if (e.key === '+' || e.key === '=' || e.key === 'PageUp') this.controls.dollyIn(ZOOM_STEP);
    else if (e.key === '-' || e.key === '_' || e.key === 'PageDown') this.controls.dollyOut(ZOOM_STEP);
    else return;
    e.preventDefault(); // Page Up/Down would scroll the page as well
  }

  clear() {
    if (this.model) {
      this.scene.remove(this.model);
      this.model.traverse((o) => {
        if (o.geometry) o.geometry.dispose();
        if (o.material) [].concat(o.material).forEach((m) => m.dispose());
      });
    }
    this.model = null;
    this.triangles = 0;
    this.canvas.dataset.triangles = '0';
    this.render();
  }

  // Shows a model from its file's bytes; returns its triangle count, or -1
  // when wanted() says, once the file is read, that it is no longer to be
  // shown (the page moved on meanwhile: a new image chosen).
  async show(buffer, format, wanted = () => true) {
    const obj = await parse(buffer, format);
    if (!wanted()) return -1;
    this.clear();
    let tris = 0;
    obj.traverse((o) => {
      if (!o.isMesh) return;
      const g = o.geometry;
      if (!g.getAttribute('normal')) g.computeVertexNormals();
      tris += (g.index ? g.index.count : g.getAttribute('position').count) / 3;
      const colours = !!g.getAttribute('color');
      if (format !== 'glb') {
        o.material = new THREE.MeshStandardMaterial({
          color: colours ? 0xffffff : 0x9aa7b8, vertexColors: colours,
          roughness: 0.75, metalness: 0.05, side: THREE.DoubleSide,
        });
      }
    });
    this.model = obj;
    this.scene.add(obj);
    this.fit();
    this.triangles = Math.round(tris);
    this.canvas.dataset.triangles = String(this.triangles);
    return this.triangles;
  }

  fit() {
    const box = new THREE.Box3().setFromObject(this.model);
    const sphere = box.getBoundingSphere(new THREE.Sphere());
    const r = sphere.radius || 1;
    const dist = r / Math.sin(THREE.MathUtils.degToRad(this.camera.fov / 2)) * 1.15;
    this.camera.near = dist / 100;
    this.camera.far = dist * 100;
    this.camera.position.copy(sphere.center).add(new THREE.Vector3(0.35, 0.25, 1).normalize().multiplyScalar(dist));
    this.camera.updateProjectionMatrix();
    this.controls.target.copy(sphere.center);
    this.controls.minDistance = r * 0.2;
    this.controls.maxDistance = dist * 10;
    this.controls.update();
    this.render();
  }
}

function parse(buffer, format) {
  switch (format) {
    case 'stl':
      return Promise.resolve(new THREE.Mesh(new STLLoader().parse(buffer)));
    case 'ply':
      return Promise.resolve(new THREE.Mesh(new PLYLoader().parse(buffer)));
    case 'obj':
      return Promise.resolve(new OBJLoader().parse(new TextDecoder().decode(buffer)));
    case 'glb':
      return new GLTFLoader().parseAsync(buffer, '').then((gltf) => gltf.scene);
    default:
      return Promise.reject(new Error(`no preview for format ${format}`));
  }
}

// WebGL may be missing (an old machine, a locked-down browser): the page
// then works without the preview.
export function webglAvailable() {
  try {
    const c = document.createElement('canvas');
    return !!(c.getContext('webgl2') || c.getContext('webgl'));
  } catch {
    return false;
  }
}
